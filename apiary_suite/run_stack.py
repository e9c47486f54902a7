"""The run's own stack: start it and wait until it answers, tear everything of the run down, or leave it up
(--keep-up) and say how to reach and remove it."""
from __future__ import annotations

import json
import time
from pathlib import Path

from harness.console import say
from harness.errors import EnvironmentSetupError
from harness.settings import Settings


def open_cluster(settings: Settings):
    """The stack for the behave process: attach to the runner's compose stack, or start local processes."""
    if settings.backend == "local":
        from apiary_suite.local import LocalCluster
        cluster = LocalCluster(settings.run_id, Path(settings.report_dir) / "local")
        cluster.up(30 * settings.timeout_multiplier)
        cluster.wait_ready(20)
        return cluster
    from apiary_suite.cluster import Cluster
    if not settings.stack_file or not Path(settings.stack_file).exists():
        raise EnvironmentSetupError("no stack", "APIARY_STACK_FILE is not set: run through ./run-integration-tests.sh")
    return Cluster.attach(json.loads(Path(settings.stack_file).read_text()))


def teardown(settings: Settings, cluster, run_dir: Path) -> bool:
    """Remove everything of the run (compose down -v, label sweep, <run_dir>/secrets / kill local
    leftovers); True when clean."""
    if settings.backend == "local":
        from apiary_suite.local import kill_leftovers
        killed = kill_leftovers(run_dir / "local")
        if killed:
            say(f"Killed {len(killed)} leftover local service process(es)")
        return True
    from apiary_suite.cluster import Cluster, docker_client
    from apiary_suite.secrets import remove_run_secrets, secrets_dir
    from harness.sweep import leftovers, sweep
    start = time.monotonic()
    left: dict = {}
    failures: list[str] = []
    try:
        client = cluster.client if cluster is not None else docker_client()
        if cluster is None and settings.compose_file:
            from harness.stack.compose import ComposeStack
            cluster = ComposeStack(settings.run_id, settings.compose_file, client=client)
        cluster = cluster or Cluster(settings.run_id, client=client, run_dir=run_dir)
        failures = cluster.down()
        left = leftovers(client, settings.run_id)
        if any(left.values()):
            failures += sweep(client, settings.run_id, cluster.project)
            left = leftovers(client, settings.run_id)
    finally:
        if not remove_run_secrets(run_dir):      # the keys go whatever else failed
            left = {**left, "secrets": [str(secrets_dir(run_dir))]}
    clean = not any(left.values())
    say(f"Teardown {'complete' if clean else 'INCOMPLETE'} in {time.monotonic() - start:.1f}s"
        + ("" if clean else f": still present {left} {failures}"))
    return clean


def print_keep_up(settings: Settings, cluster, run_dir: Path) -> None:
    if settings.backend == "local":
        state = json.loads((run_dir / "local" / "local-stack.json").read_text()) if (run_dir / "local" / "local-stack.json").exists() else {}
        pids = " ".join(str(p) for p in state.get("pids", {}).values())
        say(f"--keep-up: local services still running (ports {state.get('ports')}).\n  Remove: kill {pids}")
        return
    say(f"--keep-up: the stack stays up (project {cluster.project}).\n"
        f"  API:     {cluster.api_url}   (admin key: {cluster.api_keys.get('admin')})\n"
        f"  events:  {cluster.events_url}   router: {cluster.router_url}\n"
        f"  ps:      {' '.join(cluster.compose_cmd)} -p {cluster.project} -f docker-compose.integration.yml ps\n"
        f"  a fault: docker network disconnect {cluster.network_name('control')} $(docker ps -qf label=com.docker.compose.project={cluster.project} -f label=com.docker.compose.service=hive-a)\n"
        f"  remove:  {' '.join(cluster.compose_cmd)} -p {cluster.project} -f docker-compose.integration.yml down -v --remove-orphans; "
        f"rm -rf {run_dir / 'secrets'}   (the run's keys)\n"
        f"           (safety net: docker rm -f $(docker ps -aq -f label=io.apiary.run={settings.run_id}); "
        f"docker network prune -f --filter label=io.apiary.run={settings.run_id}; docker volume prune -f --filter label=io.apiary.run={settings.run_id})")


def start_cluster(cluster, args, run_dir: Path, meta: dict, timings: dict) -> None:
    """Bring the compose stack up and wait until it answers; stack.json for the behave process and line tools."""
    meta["compose"] = " ".join(cluster.compose_cmd)
    say(f"Starting the stack (project {cluster.project}, {meta['compose']})...")
    timings["up_s"] = round(cluster.up(120 * args.timeout_multiplier), 2)
    try:
        cluster.wait_ready(30)
    except AssertionError as exc:
        raise EnvironmentSetupError("cluster not ready", f"{exc}\n{cluster.diagnose('state:')}") from None
    (run_dir / "stack.json").write_text(json.dumps(cluster.describe(), indent=1))  # before the line tools wait for
    say(f"Stack healthy in {timings['up_s']:.1f}s; API {cluster.api_url}")
