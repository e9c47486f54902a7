"""behave hooks of the etcd example: the kit's hooks, one line each, over a ComposeStack of the example's
compose file (its image built by ../build.sh first; cached after the first build)."""
from pathlib import Path

from harness.behave import hooks
from harness.stack.compose import ComposeStack

EXAMPLE = Path(__file__).resolve().parents[1]


def before_all(context):
    hooks.install(context, lambda run_id: ComposeStack(run_id, EXAMPLE / "docker-compose.yml"), [str(EXAMPLE / "build.sh")])


def before_scenario(context, scenario):
    hooks.open_world(context)


def after_scenario(context, scenario):
    hooks.close_world(context)


def after_all(context):
    hooks.teardown(context)
