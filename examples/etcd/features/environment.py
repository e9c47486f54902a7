"""behave hooks of the etcd example: the kit's hooks, one line each, over the example's stack (../stack.py: the
kit's ComposeStack with each member's client port pinned; its image built by ../build.sh first, cached after
the first build)."""
from pathlib import Path

from examples.etcd.stack import EtcdStack
from harness.behave import hooks

EXAMPLE = Path(__file__).resolve().parents[1]


def before_all(context):
    hooks.install(context, EtcdStack, [str(EXAMPLE / "build.sh")])


def before_scenario(context, scenario):
    hooks.open_world(context)


def after_scenario(context, scenario):
    hooks.close_world(context)


def after_all(context):
    hooks.teardown(context)
