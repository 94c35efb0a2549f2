"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis): for every
operation, generated requests never get a 5xx, and every answer matches the document."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis comes with the test extra")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance, response_schema_conformance, status_code_conformance)
from serverproc import Server, stop_all  # noqa: E402

from wirt.serve.openapi import document  # noqa: E402

schema = schemathesis.openapi.from_dict(document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz-home")
    # Created VMs default to image "none" here: a fuzzed create must not build the Debian root disk.
    (home / "config.toml").write_text('[create]\nimage = "none"\ndisk = "1M"\n')
    s = Server(home)
    yield s
    s.stop()
    stop_all(home)


@schema.parametrize()
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_fuzz(case, fuzzed):
    case.call_and_validate(base_url=fuzzed.base, headers={"Authorization": f"Bearer {fuzzed.token}"},
                           checks=CHECKS)
