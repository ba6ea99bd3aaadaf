"""Open Inference Protocol (V2) REST codec: request bodies to arrays, arrays to response bodies.

Pure functions over bytes and numpy arrays, no I/O, so they are cheap to test and to reason
about. Strict on purpose: a request the model could misread (wrong shape, wrong datatype, NaN the
model cannot take, nested JSON bombs) is refused with a message naming the field, never coerced.

Inputs are accepted in two shapes: one tensor ``[N, n_features]`` (any name), or one tensor per
feature named as in the manifest, each ``[N]`` or ``[N, 1]``. Triton's binary tensor extension
(``Inference-Header-Content-Length``) is understood for inputs so ``tritonclient`` works with its
defaults; outputs are always JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_ACCEPTED_KINDS = {"BOOL": "b", "FP16": "fiu", "FP32": "fiu", "FP64": "fiu"}
MAX_DIMS = 8
#: Bound on each declared dimension and on the product of the non-zero ones. A shape such as
#: ``[2**62, 2**62, 0]`` holds no values, so it passes every count check, and numpy then fails
#: to even describe it: refused here, as the client's mistake it is.
MAX_ELEMENTS = 1 << 31


class BadRequest(ValueError):
    """A client mistake: answered 400 with the message."""


@dataclass(frozen=True)
class InputSpec:
    feature_names: tuple[str, ...]
    allow_nan: bool
    outputs: tuple[str, ...]
    #: Rows one request may carry (None: no cap), checked on the declared shape.
    max_rows: int | None = None

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


@dataclass(slots=True)
class InferRequest:
    x: np.ndarray  # float64, [rows, n_features]
    outputs: tuple[str, ...]
    id: str | None


def _reject_constant(name: str) -> float:
    raise BadRequest(f"{name} is not allowed in input data for this model")


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)
_LENIENT = json.JSONDecoder()


def decode_json(raw: bytes, *, allow_nan: bool) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8") from None
    try:
        return (_LENIENT if allow_nan else _STRICT).decode(text)
    except RecursionError:
        raise BadRequest("request JSON is nested too deeply") from None
    except BadRequest:
        raise
    except ValueError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def decode_infer(body: bytes, spec: InputSpec, header_length: int | None = None) -> InferRequest:
    """Parse one infer request into rows the model takes, or raise :class:`BadRequest`."""
    binary = b""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise BadRequest(f"Inference-Header-Content-Length {header_length} is outside the "
                             f"{len(body)}-byte body")
        body, binary = body[:header_length], body[header_length:]
    doc = decode_json(body, allow_nan=spec.allow_nan)
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object with 'inputs'")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("'inputs' must be a non-empty list of tensors")
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise BadRequest("'id' must be a string")
    outputs = _requested_outputs(doc, spec)
    tensors: list[tuple[str, np.ndarray]] = []
    offset = 0
    for i, item in enumerate(inputs):
        name, arr, used = _tensor(item, i, binary, offset, spec.max_rows)
        offset += used
        tensors.append((name, arr))
    if offset != len(binary):
        raise BadRequest(f"binary data is {len(binary)} bytes, inputs declare {offset}")
    x = _rows(tensors, spec)
    if not spec.allow_nan:
        if not np.isfinite(x).all():
            raise BadRequest("input contains NaN or infinity, which this model does not accept")
    elif np.isinf(x).any():
        raise BadRequest("input contains infinity")
    return InferRequest(x=x, outputs=outputs, id=req_id)


def _requested_outputs(doc: dict[str, Any], spec: InputSpec) -> tuple[str, ...]:
    requested = doc.get("outputs")
    params = doc.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    names: list[str] = []
    if requested is not None:
        if not isinstance(requested, list):
            raise BadRequest("'outputs' must be a list")
        for out in requested:
            name = out.get("name") if isinstance(out, dict) else None
            if not isinstance(name, str):
                raise BadRequest("each requested output needs a string 'name'")
            if name not in spec.outputs:
                raise BadRequest(f"unknown output {name!r}; this model has "
                                 f"{', '.join(spec.outputs)}")
            if name not in names:
                names.append(name)
    if params and params.get("predict_proba") is True:
        if "predict_proba" not in spec.outputs:
            raise BadRequest("this model has no predict_proba output")
        if not names:
            names.append("predict")
        if "predict_proba" not in names:
            names.append("predict_proba")
    return tuple(names) if names else ("predict",)


def _tensor(item: Any, i: int, binary: bytes, offset: int,
            max_rows: int | None = None) -> tuple[str, np.ndarray, int]:
    if not isinstance(item, dict):
        raise BadRequest(f"inputs[{i}] must be an object")
    name = item.get("name")
    if not isinstance(name, str):
        raise BadRequest(f"inputs[{i}] needs a string 'name'")
    datatype = item.get("datatype")
    shape = item.get("shape")
    if not isinstance(datatype, str):
        raise BadRequest(f"input {name!r} needs a string 'datatype'")
    if datatype not in NUMERIC_DTYPES:
        if datatype == "BYTES":
            raise BadRequest(f"input {name!r}: BYTES is not supported, this model takes numbers")
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
    if (not isinstance(shape, list) or not 0 < len(shape) <= MAX_DIMS
            or not all(type(d) is int and d >= 0 for d in shape)):
        raise BadRequest(f"input {name!r}: 'shape' must be a list of 1 to {MAX_DIMS} "
                         "non-negative integers")
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise BadRequest(f"input {name!r}: shape {shape} declares more than {MAX_ELEMENTS} "
                         "values")
    if max_rows is not None and shape[0] > max_rows:
        raise BadRequest(f"input {name!r}: {shape[0]} rows, over this server's cap of {max_rows}"
                         " rows per request (SEAWAY_MAX_ROWS_PER_REQUEST); split the request")
    count = math.prod(shape)
    dtype = NUMERIC_DTYPES[datatype]
    params = item.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size {size!r} does not fit the body")
        if size != count * dtype.itemsize:
            raise BadRequest(f"input {name!r}: shape {shape} of {datatype} needs "
                             f"{count * dtype.itemsize} bytes, binary_data_size is {size}")
        arr = np.frombuffer(binary, dtype=dtype, count=count, offset=offset).reshape(shape)
        return name, arr, size
    if "data" not in item:
        raise BadRequest(f"input {name!r} has no 'data'")
    data = item["data"]
    if not isinstance(data, list):
        data = [data]
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise BadRequest(f"input {name!r}: 'data' is ragged or not numbers") from None
    kinds = _ACCEPTED_KINDS.get(datatype, "iu")
    if arr.size and arr.dtype.kind not in kinds:
        raise BadRequest(f"input {name!r}: 'data' holds {_kind_name(arr.dtype)}, not {datatype}")
    if arr.size != count:
        raise BadRequest(f"input {name!r}: shape {shape} needs {count} values, 'data' has "
                         f"{arr.size}")
    if dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise BadRequest(f"input {name!r}: a value is out of range for {datatype}")
    return name, arr.reshape(shape), 0


def _kind_name(dtype: np.dtype[Any]) -> str:
    return {"U": "strings", "S": "strings", "O": "mixed or null values", "b": "booleans",
            "f": "floats", "i": "integers", "u": "integers"}.get(dtype.kind, str(dtype))


def _rows(tensors: Sequence[tuple[str, np.ndarray]], spec: InputSpec) -> np.ndarray:
    n = spec.n_features
    if len(tensors) == 1 and not (n == 1 and tensors[0][0] in spec.feature_names
                                  and tensors[0][1].ndim == 1):
        name, arr = tensors[0]
        if arr.ndim != 2 or arr.shape[1] != n:
            raise BadRequest(f"input {name!r}: shape {list(arr.shape)} is not [N, {n}]; this "
                             f"model takes {n} features per row")
        if arr.shape[0] == 0:
            raise BadRequest(f"input {name!r} has no rows")
        return arr.astype(np.float64, copy=False)
    by_name = dict(tensors)
    if len(by_name) != len(tensors):
        raise BadRequest("input names repeat")
    missing = [f for f in spec.feature_names if f not in by_name]
    extra = [t for t in by_name if t not in spec.feature_names]
    if missing or extra:
        raise BadRequest(
            f"with one input per feature, inputs must be exactly the model's {n} features"
            + (f"; missing {', '.join(missing[:5])}" if missing else "")
            + (f"; unknown {', '.join(extra[:5])}" if extra else ""))
    cols = []
    rows: int | None = None
    for f in spec.feature_names:
        arr = by_name[f]
        if arr.ndim == 2 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 1:
            raise BadRequest(f"input {f!r}: shape {list(arr.shape)} is not [N] or [N, 1]")
        if rows is None:
            rows = arr.shape[0]
        elif arr.shape[0] != rows:
            raise BadRequest(f"input {f!r} has {arr.shape[0]} rows, others have {rows}")
        cols.append(arr.astype(np.float64, copy=False))
    if not rows:
        raise BadRequest("inputs have no rows")
    return np.column_stack(cols)


def output_tensor(name: str, datatype: str, values: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": list(values.shape),
            "data": values.ravel().tolist()}


#: Built once: ``json.dumps`` with any non-default argument builds an encoder on every call
#: (~1 µs of a one-row response's ~3).
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def encode(doc: dict[str, Any]) -> bytes:
    return _COMPACT.encode(doc).encode()


def error_body(message: str) -> bytes:
    return encode({"error": message})
