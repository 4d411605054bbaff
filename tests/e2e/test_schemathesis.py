"""Schemathesis against a live controller with real data: every operation of /openapi.json, every check.

The controller is a real process and the data is real (tests/e2e/schemathesis_data.py): a running local
node with its agent, subscribers, a WireGuard server and client on the node, an IPv6 pool with an
allocation. ``schemathesis run`` (the CLI: its engine, its reports, the same output an operator gets) runs
every phase (examples, coverage, fuzzing with positive and negative data, stateful) with ``--checks all``,
response schema conformance included, authenticated with the admin key, continuing past a failure so one run
lists them all (the settings are the CONFIG below). The run is reproducible: a fixed seed, one worker, no
example database; and it has a fixed budget (``max-examples`` per operation), which the test checks was
really spent, so a document that loses its operations cannot pass by testing nothing.

Data kept intact: the hooks point half of the generated path parameters at the fixture's real ids (so cases
read and change existing resources, not only 404s) and id-like body/query fields (node_id, server_id,
pool_id) at the real ones; DELETE never targets a fixture id (generated ids equal to one are dropped), so
the resources stay for the later operations. Everything else (stop/start/reboot of the node, PUT/PATCH with
any valid or invalid body, new nodes and resources, rotations) runs for real.

Not tested: the two SSE streams (GET /api/v1/events, GET /api/v1/nodes/{id}/logs). They never end on their
own, so every case would wait out the request timeout before a check could read the body; their framing
and shutdown are covered by tests/e2e/test_local_node.py and test_api.py.

On a failure, the message lists each distinct failure (operation, check, how to reproduce it with curl);
``schemathesis-report/`` under the test's tmp dir also holds the JSON report and a pytest file replaying them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.controller_process import REPO, ControllerProcess
from tests.e2e.schemathesis_data import DATA_ENV, LiveData, seed

#: fuzzing examples per operation (the examples, coverage and stateful phases add their own cases)
MAX_EXAMPLES = 40
#: all phases together must have sent at least this many cases
MIN_TOTAL_CASES = 2000
SEED = 20261201
KEY_ENV = "VPNFLEET_SCHEMATHESIS_KEY"
#: Server-Sent Events: see the module docstring
STREAMS = r"^/api/v1/(events|nodes/\{[^}]+\}/logs)$"
RUN_TIMEOUT = 1200
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for the whole run (its data is what the cases read and change)."""
    # ignored_auth sends wrong keys on purpose: with the default throttle (20 failures a minute per address)
    # the run's own address would be locked out and every later case answered 429. The throttle has its own
    # tests; here it only has to stay out of the way.
    ctl = ControllerProcess(tmp_path_factory.mktemp("schemathesis") / "data",
                            env={"VPNFLEET_AUTH_FAILURES_PER_WINDOW": "1000000"})
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()


#: schemathesis.toml of the run. The key comes from the environment (never on a command line). A 503/504
#: is a documented answer of the routes that need a connected agent or a running node (/nodes/{id}/info,
#: /nodes/{id}/tcping, /sub/...: "no connected agent", "no running node serves this subscription"), not a
#: crash, so not_a_server_error accepts those two; a 500 still fails everywhere, and status_code_conformance
#: still fails a 503 where it is not documented.
CONFIG = f"""
seed = {SEED}
workers = 1
request-timeout = 30
continue-on-failure = true
headers = {{ "X-API-Key" = "${{{KEY_ENV}}}" }}

[generation]
max-examples = {MAX_EXAMPLES}
database = "none"

[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503", "504"]

# Schema-valid input the API still refuses (seed 000's /api/v2ray answers each with 400, its contract), each with its documented status: rules JSON Schema cannot say
# (a region must be configured, node_ids must exist, end_time after start_time, a subnet apart from the node's
# networks, an address with its prefix) are 422s naming the field; an id that names nothing is a 404; a
# taken name or port a 409. Anything else (401, 405, 500) still fails the check.
# 400: the edge refuses NUL characters in any string, as the document says of every operation's 400.
# 403: the run's admin may not change its own account (role, status, deletion) nor sign up when
# self-registration is off; no other route refuses an admin.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "403", "404", "409", "422", "503", "504"]

# Signing in: a well-formed body with a wrong password, code or token is a 401 (a locked name a 429), which
# is the answer those routes exist to give.
[[operations]]
include-path-regex = "^/api/v1/auth/(login|verify-2fa|refresh|password|2fa/.*)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "422", "429"]

# A deleted node stays readable by design (status "deleted", DELETE is a soft delete seed 000 relies on), and
# so does its metrics history until metrics_retention_days prunes it.
[[operations]]
include-path-regex = "^/api/v1/nodes/[^/]+(/metrics)?$"
checks.use_after_free.enabled = false
"""


def _run_schemathesis(ctl: ControllerProcess, data: LiveData, report_dir: Path) -> tuple[int, str]:
    """``schemathesis run`` against the live controller; its exit code and output (also in report_dir)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    config = report_dir / "schemathesis.toml"
    # under TLS (ControllerProcess' default) schemathesis trusts the controller's own CA, and only it
    tls = f'tls-verify = "{ctl.data_dir / "pki" / "ca.crt"}"\n' if ctl.url.startswith("https:") else ""
    config.write_text(tls + CONFIG)
    argv = [SCHEMATHESIS, "--config-file", str(config), "run", f"{ctl.url}/openapi.json", "--url", ctl.url,
            "--no-color", "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
            "--exclude-path-regex", STREAMS, "--report", "json,pytest", "--report-dir", str(report_dir)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_data",
           DATA_ENV: data.to_env(), KEY_ENV: (ctl.data_dir / "admin.key").read_text().strip()}
    log = report_dir / "output.txt"  # written as it runs: `tail -f` shows progress
    with open(log, "w") as out:
        rc = subprocess.run(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            timeout=RUN_TIMEOUT).returncode
    return rc, log.read_text(errors="replace")


def _summary(report: dict[str, Any]) -> str:
    """One line per failure kind with the operations it hit (the details follow in schemathesis' output)."""
    return "\n".join(f"  {f['code']} {f['title']} ({f['count']}): " + ", ".join(f["operations"])
                     for f in report.get("failures", []))


def _total_cases(report: dict[str, Any], output: str) -> int:
    """Cases the run sent: from the JSON report, or the summary line ("N generated") should its format move."""
    value = report.get("test_cases", {}).get("generated")
    if isinstance(value, int):
        return value
    found = re.findall(r"(\d[\d,]*) generated", output)
    return int(found[-1].replace(",", "")) if found else 0


@pytest.mark.timeout(RUN_TIMEOUT + 120)
def test_api_conforms_to_its_openapi(live: ControllerProcess, tmp_path: Path) -> None:
    data = seed(live)
    rc, output = _run_schemathesis(live, data, tmp_path / "schemathesis-report")
    reports = sorted((tmp_path / "schemathesis-report").glob("*.json"))
    report = json.loads(reports[-1].read_text()) if reports else {}
    # the fixture's resources survived the run (DELETE was kept off them): the cases kept reaching real data
    for path in (f"/api/v1/nodes/{data.node_id}", f"/api/v1/clients/{data.client_ids[0]}",
                 f"/api/v1/wireguard/servers/{data.wg_server_id}", f"/api/v1/ipv6/pools/{data.pool_id}"):
        assert live.api.get(path).status_code == 200, f"fixture resource {path} is gone"
    # the failures block of schemathesis' own output: each distinct failure, its check and a curl line
    failures = output[output.find("FAILURES"):] if "FAILURES" in output else output[-6000:]
    assert rc == 0, (f"schemathesis found failures (exit {rc}):\n{_summary(report)}\n"
                     f"{failures[-20000:]}")
    total = _total_cases(report, output)
    assert total >= MIN_TOTAL_CASES, f"only {total} cases were sent:\n{output[-3000:]}"
