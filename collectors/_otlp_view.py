"""A wire-compatible view of ``ExportTraceServiceRequest`` for the span mapper.

Reading a protobuf field from Python costs an object per nested message: for a span's
attributes that is a ``KeyValue`` and an ``AnyValue`` per attribute, the larger part of the
mapping's CPU. This view parses the same bytes with the span's message fields
(``attributes``, ``events``, ``links``, ``status``) declared as ``bytes`` (a nested message is a
length-delimited field on the wire, so the payload is kept as it came), and its enums as
integers. Attributes repeat from span to span, so their raw bytes key a cache and each distinct
attribute is decoded once per request.

The view is derived from the OTLP descriptors themselves (same field numbers), and a request is
parsed as the real message first: bodies that are not valid OTLP never reach it.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

__all__ = ["parse_view"]

_PACKAGE = "marketguard.otlpview"
_Field = descriptor_pb2.FieldDescriptorProto


def _view(desc: Descriptor, name: str, nested: dict[str, str]) -> descriptor_pb2.DescriptorProto:
    """``desc`` renamed, its ``nested`` message fields pointing at views, the others as bytes."""
    proto = descriptor_pb2.DescriptorProto()
    desc.CopyToProto(proto)
    proto.name = name
    del proto.nested_type[:], proto.enum_type[:]
    for field in proto.field:
        if field.name in nested:
            field.type_name = f".{_PACKAGE}.{nested[field.name]}"
        elif field.type in (_Field.TYPE_MESSAGE, _Field.TYPE_ENUM):
            field.type = _Field.TYPE_BYTES if field.type == _Field.TYPE_MESSAGE else _Field.TYPE_INT32
            field.ClearField("type_name")
    return proto


def _request_class() -> Any:
    file = descriptor_pb2.FileDescriptorProto(name="marketguard_otlp_view.proto", package=_PACKAGE, syntax="proto3")
    file.message_type.extend([
        _view(ExportTraceServiceRequest.DESCRIPTOR, "Request", {"resource_spans": "ResourceSpans"}),
        _view(ResourceSpans.DESCRIPTOR, "ResourceSpans", {"scope_spans": "ScopeSpans"}),
        _view(ScopeSpans.DESCRIPTOR, "ScopeSpans", {"spans": "Span"}),
        _view(Span.DESCRIPTOR, "Span", {}),
    ])  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


_REQUEST = _request_class()


def parse_view(wire: bytes) -> Any:
    """The view of a serialized (and already validated) ``ExportTraceServiceRequest``."""
    return _REQUEST.FromString(wire)

