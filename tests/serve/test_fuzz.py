"""Schemathesis fuzzes the live service from its own OpenAPI schema: no 5xx, responses match it."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance

from ltrkit.export import load_exported
from ltrkit.serve import Limits, create_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_survives_generated_requests(live, onnx_file):
    server = live(create_app(load_exported(onnx_file), limits=Limits(max_docs_per_list=20, max_lists=4, max_body_bytes=64 * 1024)))
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(operation.path for operation in operations) == ["/health", "/metadata", "/rank", "/ready"]
    for operation in operations:

        # a bounded number of generated requests per operation, so the test takes seconds
        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def call(case):
            case.call_and_validate(checks=CHECKS, timeout=30)

        call()
