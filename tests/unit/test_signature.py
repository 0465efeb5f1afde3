"""Unit tests of pyflink_triton.codecs.signature: resolving columns at registration, binding
them to the served model at open().

MULTI_IO_* and CUBE_* are what a real Triton 2.51 answered to GET /v2/models/<name> and
GET /v2/models/<name>/config for model_repository/multi_io and identity_int32_cube (pasted
verbatim); :func:`served_model` builds other models in exactly the same shape.
"""

from __future__ import annotations

import copy
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyflink.table import DataTypes

from pyflink_triton.codecs.columns import TensorColumn, sql_type
from pyflink_triton.codecs.signature import BoundSignature, ModelSignature
from pyflink_triton.codecs.tensors import InputCodec, OutputCodec
from pyflink_triton.errors import TritonConfigError, TritonRequestError
from pyflink_triton.options import TritonOptions
from pyflink_triton.wire.http import http_input
from pyflink_triton.wire.request import ModelRef

D = DataTypes

# --- what Triton serves (pasted from a real server) ----------------------------------------------

MULTI_IO_METADATA = {
    "name": "multi_io",
    "versions": ["1"],
    "platform": "python",
    "inputs": [{"name": "values", "datatype": "FP32", "shape": [-1, -1]},
               {"name": "Label", "datatype": "BYTES", "shape": [-1, 1]}],
    "outputs": [{"name": "TOTAL", "datatype": "FP64", "shape": [-1, 1]},
                {"name": "label_Upper", "datatype": "BYTES", "shape": [-1, 1]},
                {"name": "Count", "datatype": "INT64", "shape": [-1, 1]}],
}
MULTI_IO_CONFIG = {
    "name": "multi_io",
    "platform": "",
    "backend": "python",
    "runtime": "",
    "version_policy": {"latest": {"num_versions": 1}},
    "max_batch_size": 8,
    "input": [{"name": "values",
               "data_type": "TYPE_FP32",
               "format": "FORMAT_NONE",
               "dims": [-1],
               "is_shape_tensor": False,
               "allow_ragged_batch": False,
               "optional": False,
               "is_non_linear_format_io": False},
              {"name": "Label",
               "data_type": "TYPE_STRING",
               "format": "FORMAT_NONE",
               "dims": [1],
               "is_shape_tensor": False,
               "allow_ragged_batch": False,
               "optional": False,
               "is_non_linear_format_io": False}],
    "output": [{"name": "TOTAL",
                "data_type": "TYPE_FP64",
                "dims": [1],
                "label_filename": "",
                "is_shape_tensor": False,
                "is_non_linear_format_io": False},
               {"name": "label_Upper",
                "data_type": "TYPE_STRING",
                "dims": [1],
                "label_filename": "",
                "is_shape_tensor": False,
                "is_non_linear_format_io": False},
               {"name": "Count",
                "data_type": "TYPE_INT64",
                "dims": [1],
                "label_filename": "",
                "is_shape_tensor": False,
                "is_non_linear_format_io": False}],
    "batch_input": [],
    "batch_output": [],
    "optimization": {"priority": "PRIORITY_DEFAULT",
                     "input_pinned_memory": {"enable": True},
                     "output_pinned_memory": {"enable": True},
                     "gather_kernel_buffer_threshold": 0,
                     "eager_batching": False},
    "dynamic_batching": {"preferred_batch_size": [8],
                         "max_queue_delay_microseconds": 0,
                         "preserve_ordering": False,
                         "priority_levels": 0,
                         "default_priority_level": 0,
                         "priority_queue_policy": {}},
    "instance_group": [{"name": "multi_io_0",
                        "kind": "KIND_CPU",
                        "count": 1,
                        "gpus": [],
                        "secondary_devices": [],
                        "profile": [],
                        "passive": False,
                        "host_policy": ""}],
    "default_model_filename": "model.py",
    "cc_model_filenames": {},
    "metric_tags": {},
    "parameters": {},
    "model_warmup": [],
}
MULTI_IO_SIGNATURE = (
    "The model's signature (max_batch_size 8: the first dim (-1) is the batch): inputs "
    "[values FP32 [-1, -1], Label BYTES [-1, 1]], outputs [TOTAL FP64 [-1, 1], label_Upper "
    "BYTES [-1, 1], Count INT64 [-1, 1]].")

CUBE_METADATA = {
    "name": "identity_int32_cube",
    "versions": ["1"],
    "platform": "python",
    "inputs": [{"name": "INPUT0", "datatype": "INT32", "shape": [-1, -1, -1]}],
    "outputs": [{"name": "OUTPUT0", "datatype": "INT32", "shape": [-1, -1, -1]}],
}
CUBE_CONFIG = {
    "name": "identity_int32_cube",
    "platform": "",
    "backend": "python",
    "runtime": "",
    "version_policy": {"latest": {"num_versions": 1}},
    "max_batch_size": 0,
    "input": [{"name": "INPUT0",
               "data_type": "TYPE_INT32",
               "format": "FORMAT_NONE",
               "dims": [-1, -1, -1],
               "is_shape_tensor": False,
               "allow_ragged_batch": False,
               "optional": False,
               "is_non_linear_format_io": False}],
    "output": [{"name": "OUTPUT0",
                "data_type": "TYPE_INT32",
                "dims": [-1, -1, -1],
                "label_filename": "",
                "is_shape_tensor": False,
                "is_non_linear_format_io": False}],
    "batch_input": [],
    "batch_output": [],
    "optimization": {"priority": "PRIORITY_DEFAULT",
                     "input_pinned_memory": {"enable": True},
                     "output_pinned_memory": {"enable": True},
                     "gather_kernel_buffer_threshold": 0,
                     "eager_batching": False},
    "instance_group": [{"name": "identity_int32_cube_0",
                        "kind": "KIND_CPU",
                        "count": 1,
                        "gpus": [],
                        "secondary_devices": [],
                        "profile": [],
                        "passive": False,
                        "host_policy": ""}],
    "default_model_filename": "model.py",
    "cc_model_filenames": {},
    "metric_tags": {},
    "parameters": {},
    "model_warmup": [],
}
CUBE_SIGNATURE = ("The model's signature (max_batch_size 0: no batch dimension): inputs "
                  "[INPUT0 INT32 [-1, -1, -1]], outputs [OUTPUT0 INT32 [-1, -1, -1]].")

MULTI_IO = ModelRef("multi_io")
CUBE = ModelRef("identity_int32_cube")
MM = ModelRef("mm")


def served_model(inputs, outputs, max_batch_size: int = 0, optional=(), name: str = "mm"):
    """(metadata, config) as Triton serves them, for tensors given as (name, datatype, dims);
    dims exclude the batch dimension, which metadata shows as -1 when max_batch_size > 0."""
    batch = [-1] if max_batch_size > 0 else []

    def config_type(datatype: str) -> str:
        return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"

    metadata = {
        "name": name, "versions": ["1"], "platform": "python",
        "inputs": [{"name": n, "datatype": t, "shape": [*batch, *dims]} for n, t, dims in inputs],
        "outputs": [{"name": n, "datatype": t, "shape": [*batch, *dims]}
                    for n, t, dims in outputs],
    }
    config = {
        "name": name, "platform": "", "backend": "python", "max_batch_size": max_batch_size,
        "input": [{"name": n, "data_type": config_type(t), "format": "FORMAT_NONE",
                   "dims": list(dims), "is_shape_tensor": False, "allow_ragged_batch": False,
                   "optional": n in optional, "is_non_linear_format_io": False}
                  for n, t, dims in inputs],
        "output": [{"name": n, "data_type": config_type(t), "dims": list(dims),
                    "label_filename": "", "is_shape_tensor": False,
                    "is_non_linear_format_io": False} for n, t, dims in outputs],
    }
    return metadata, config


def test_served_model_builds_what_triton_serves():
    metadata, config = served_model(
        [("values", "FP32", [-1]), ("Label", "BYTES", [1])],
        [("TOTAL", "FP64", [1]), ("label_Upper", "BYTES", [1]), ("Count", "INT64", [1])],
        max_batch_size=8, name="multi_io")
    assert metadata == MULTI_IO_METADATA
    assert config["input"] == MULTI_IO_CONFIG["input"]
    assert config["output"] == MULTI_IO_CONFIG["output"]
    assert config["max_batch_size"] == MULTI_IO_CONFIG["max_batch_size"]


# --- helpers -------------------------------------------------------------------------------------

def options(**values: str) -> TritonOptions:
    """Options with the given keys (underscores for dashes)."""
    return TritonOptions.from_dict({"endpoint": "localhost:8000", "model-name": "m",
                                    **{k.replace("_", "-"): v for k, v in values.items()}})


class Served:
    """``fetch_served`` for resolve(): returns the model's (metadata, config), counts calls."""

    def __init__(self, metadata=MULTI_IO_METADATA, config=MULTI_IO_CONFIG) -> None:
        self.metadata, self.config, self.calls = metadata, config, 0

    def __call__(self):
        self.calls += 1
        return copy.deepcopy(self.metadata), copy.deepcopy(self.config)


def never_fetched():
    raise AssertionError("fetch_served() must not be called when everything is declared")


def resolve(inputs=None, output=None, served=None, model=MULTI_IO, **option_values):
    served = served or Served()
    return ModelSignature.resolve(model, options(**option_values), inputs, output, served)


def config_error(inputs=None, output=None, served=None, model=MULTI_IO, **option_values) -> str:
    with pytest.raises(TritonConfigError) as info:
        resolve(inputs, output, served, model, **option_values)
    return str(info.value)


def bind(signature: ModelSignature, metadata=MULTI_IO_METADATA, config=MULTI_IO_CONFIG,
         model=MULTI_IO, **option_values) -> BoundSignature:
    return signature.bind(model, metadata, config, options(**option_values))


def bind_error(signature: ModelSignature, metadata=MULTI_IO_METADATA, config=MULTI_IO_CONFIG,
               model=MULTI_IO, signature_line: str | None = None, **option_values) -> str:
    """The error message of a failing bind(); checks the parts every such message has."""
    with pytest.raises(TritonRequestError) as info:
        bind(signature, metadata, config, model, **option_values)
    message = str(info.value)
    assert message.startswith(f"Model {model}: ")
    last_line = message.splitlines()[-1]
    assert last_line.startswith("The model's signature (max_batch_size ")
    if signature_line is not None:
        assert last_line == signature_line
    for tensor in [*metadata.get("inputs", []), *metadata.get("outputs", [])]:
        assert f"{tensor['name']} {tensor['datatype']} {tensor['shape']}" in last_line
    return message


def declared(inputs, output, **option_values) -> ModelSignature:
    """A signature resolved from typed declarations only (no server)."""
    return ModelSignature.resolve(MM, options(**option_values), inputs, output, never_fetched)


MULTI_IO_DECLARED = [("values", D.ARRAY(D.FLOAT())), ("Label", D.STRING())]


# --- resolve: derived from the server ------------------------------------------------------------

def test_derive_everything_from_multi_io():
    served = Served()
    signature = resolve(served=served)
    assert served.calls == 1
    assert signature.inputs == (TensorColumn("values", D.ARRAY(D.FLOAT())),
                                TensorColumn("Label", D.STRING()))
    assert signature.outputs == (TensorColumn("TOTAL", D.DOUBLE()),
                                 TensorColumn("label_Upper", D.STRING()),
                                 TensorColumn("Count", D.BIGINT()))
    assert signature.row_output is True
    assert signature.result_type == D.ROW([D.FIELD("TOTAL", D.DOUBLE()),
                                           D.FIELD("label_Upper", D.STRING()),
                                           D.FIELD("Count", D.BIGINT())])
    assert signature.describe() == (
        "inputs ('values' ARRAY<FLOAT>, 'Label' STRING) -> "
        "ROW ('TOTAL' DOUBLE, 'label_Upper' STRING, 'Count' BIGINT)")


def test_derive_single_output_is_not_a_row():
    signature = resolve(served=Served(CUBE_METADATA, CUBE_CONFIG), model=CUBE)
    cube = D.ARRAY(D.ARRAY(D.ARRAY(D.INT())))
    assert signature.inputs == (TensorColumn("INPUT0", cube),)
    assert signature.outputs == (TensorColumn("OUTPUT0", cube),)
    assert signature.row_output is False
    assert signature.result_type == cube
    assert signature.describe() == ("inputs ('INPUT0' ARRAY<ARRAY<ARRAY<INT>>>) -> "
                                    "'OUTPUT0' ARRAY<ARRAY<ARRAY<INT>>>")


@pytest.mark.parametrize("datatype, dims, expected", [
    ("BOOL", [1], D.BOOLEAN()),
    ("INT8", [1], D.TINYINT()),
    ("INT16", [1], D.SMALLINT()),
    ("INT32", [1], D.INT()),
    ("INT64", [1], D.BIGINT()),
    ("UINT8", [1], D.SMALLINT()),
    ("UINT16", [1], D.INT()),
    ("UINT32", [1], D.BIGINT()),
    ("UINT64", [1], D.DECIMAL(20, 0)),
    ("FP16", [1], D.FLOAT()),
    ("BF16", [1], D.FLOAT()),
    ("FP32", [1], D.FLOAT()),
    ("FP64", [1], D.DOUBLE()),
    ("BYTES", [1], D.STRING()),
    ("FP32", [], D.FLOAT()),
    ("FP32", [1, 1], D.FLOAT()),
    ("FP32", [-1], D.ARRAY(D.FLOAT())),
    ("FP32", [1, -1], D.ARRAY(D.FLOAT())),
    ("FP32", [1, 16], D.ARRAY(D.FLOAT())),
    ("BYTES", [-1, 1], D.ARRAY(D.ARRAY(D.STRING()))),
    ("UINT64", [2, 3], D.ARRAY(D.ARRAY(D.DECIMAL(20, 0)))),
    ("INT8", [1, 3, 224, 224], D.ARRAY(D.ARRAY(D.ARRAY(D.TINYINT())))),
])
@pytest.mark.parametrize("max_batch_size", [0, 4])
def test_derived_column_types(datatype, dims, expected, max_batch_size):
    """The batch dimension is never part of a column; leading dims of 1 are left out."""
    metadata, config = served_model([("IN", datatype, dims)], [("OUT", datatype, dims)],
                                    max_batch_size)
    signature = resolve(served=Served(metadata, config), model=MM,
                        half_precision_inputs="true")
    assert signature.inputs == (TensorColumn("IN", expected),)
    assert signature.outputs == (TensorColumn("OUT", expected),)
    assert signature.result_type == expected


def test_undeclared_inputs_are_the_required_ones():
    metadata, config = served_model(
        [("A", "FP32", [1]), ("MASK", "BOOL", [-1]), ("B", "INT64", [1])],
        [("Y", "FP32", [1])], optional=("MASK",))
    signature = resolve(served=Served(metadata, config), model=MM)
    assert [c.name for c in signature.inputs] == ["A", "B"]


def test_optional_input_can_be_declared():
    metadata, config = served_model([("A", "FP32", [1]), ("MASK", "BOOL", [-1])],
                                    [("Y", "FP32", [1])], optional=("MASK",))
    signature = resolve(["A", "MASK"], served=Served(metadata, config), model=MM)
    assert signature.inputs[1] == TensorColumn("MASK", D.ARRAY(D.BOOLEAN()))


def test_config_without_optional_flags_means_required():
    metadata, config = served_model([("A", "FP32", [1]), ("B", "FP32", [1])],
                                    [("Y", "FP32", [1])])
    for entry in config["input"]:
        del entry["optional"]
    assert len(resolve(served=Served(metadata, config), model=MM).inputs) == 2


# --- resolve: declared columns -------------------------------------------------------------------

def test_fully_declared_needs_no_server():
    signature = ModelSignature.resolve(
        MULTI_IO, options(), MULTI_IO_DECLARED,
        [("TOTAL", D.DOUBLE()), ("Count", D.BIGINT())], never_fetched)
    assert signature.inputs == (TensorColumn("values", D.ARRAY(D.FLOAT())),
                                TensorColumn("Label", D.STRING()))
    assert signature.outputs == (TensorColumn("TOTAL", D.DOUBLE()),
                                 TensorColumn("Count", D.BIGINT()))
    assert signature.row_output is True


def test_declared_sql_type_strings_are_parsed():
    signature = ModelSignature.resolve(
        MULTI_IO, options(), [("values", "ARRAY<FLOAT NOT NULL>"), ("Label", "VARCHAR(20)")],
        ("TOTAL", "DOUBLE"), never_fetched)
    assert signature.inputs == (TensorColumn("values", D.ARRAY(D.FLOAT(False))),
                                TensorColumn("Label", D.VARCHAR(20)))
    assert signature.outputs == (TensorColumn("TOTAL", D.DOUBLE()),)


def test_declared_invalid_sql_type_names_the_column():
    with pytest.raises(TritonConfigError) as info:
        ModelSignature.resolve(MULTI_IO, options(), [("values", "ARRAY<FLOT>")],
                               ("TOTAL", "DOUBLE"), never_fetched)
    assert "'values'" in str(info.value)
    assert "'ARRAY<FLOT>'" in str(info.value)


@pytest.mark.parametrize("data_type", [D.DATE(), D.DECIMAL(10, 2), D.MAP(D.INT(), D.INT())],
                         ids=str)
def test_declared_unsupported_type_names_the_column(data_type):
    with pytest.raises(TritonConfigError) as info:
        declared([("my_col", data_type)], ("y", D.FLOAT()))
    assert "'my_col'" in str(info.value)
    assert "no Triton tensor datatype" in str(info.value)


def test_declared_names_take_types_from_the_server_in_declared_order():
    served = Served()
    signature = resolve(["Label", "values"], "Count", served=served)
    assert served.calls == 1
    assert signature.inputs == (TensorColumn("Label", D.STRING()),
                                TensorColumn("values", D.ARRAY(D.FLOAT())))
    assert signature.outputs == (TensorColumn("Count", D.BIGINT()),)
    assert signature.row_output is False
    assert signature.result_type == D.BIGINT()


def test_mixed_declarations():
    signature = resolve([("values", D.ARRAY(D.FLOAT())), "Label"],
                        ["Count", ("TOTAL", D.DOUBLE())])
    assert signature.inputs == (TensorColumn("values", D.ARRAY(D.FLOAT())),
                                TensorColumn("Label", D.STRING()))
    assert signature.outputs == (TensorColumn("Count", D.BIGINT()),
                                 TensorColumn("TOTAL", D.DOUBLE()))


def test_fetched_metadata_checks_declared_types_at_registration():
    """When the model's metadata was fetched anyway, what open() would refuse fails now."""
    message = config_error([("values", D.ARRAY(D.DOUBLE())), "Label"], "Count")
    assert message.splitlines()[0] == (
        "Model 'multi_io': Column 'values' (ARRAY<DOUBLE>) does not fit input tensor "
        "'values': expected FP64, found FP32.")
    assert message.splitlines()[1] == MULTI_IO_SIGNATURE


def test_declared_outputs_with_derived_inputs_fetch_once():
    served = Served()
    signature = resolve(None, ("TOTAL", D.DOUBLE()), served=served)
    assert served.calls == 1
    assert [c.name for c in signature.inputs] == ["values", "Label"]


@pytest.mark.parametrize("output, row_output, names", [
    ("TOTAL", False, ["TOTAL"]),
    (("TOTAL", D.DOUBLE()), False, ["TOTAL"]),
    (["TOTAL"], True, ["TOTAL"]),  # a list is a ROW, even of one field
    ([("TOTAL", D.DOUBLE())], True, ["TOTAL"]),
    (["Count", "TOTAL"], True, ["Count", "TOTAL"]),
])
def test_output_declaration_forms(output, row_output, names):
    signature = resolve(MULTI_IO_DECLARED, output)
    assert signature.row_output is row_output
    assert [c.name for c in signature.outputs] == names
    if row_output:
        assert signature.result_type == D.ROW([D.FIELD(c.name, c.data_type)
                                               for c in signature.outputs])
        assert " -> ROW (" in signature.describe()
    else:
        assert signature.result_type == signature.outputs[0].data_type
        assert "ROW" not in signature.describe()


# --- resolve: input-names / output-names ---------------------------------------------------------

def test_input_names_by_position():
    signature = resolve([("v", D.ARRAY(D.FLOAT())), ("l", D.STRING())], "TOTAL",
                        input_names="values,Label")
    assert signature.inputs == (TensorColumn("v", D.ARRAY(D.FLOAT()), "values"),
                                TensorColumn("l", D.STRING(), "Label"))
    assert signature.describe().startswith(
        "inputs ('v' ARRAY<FLOAT> -> tensor 'values', 'l' STRING -> tensor 'Label') -> ")


def test_input_names_by_column_name_maps_only_those_named():
    signature = resolve(["v", "Label"], "TOTAL", input_names="v:values")
    assert signature.inputs == (TensorColumn("v", D.ARRAY(D.FLOAT()), "values"),
                                TensorColumn("Label", D.STRING()))  # type from the server


def test_input_names_by_column_name_in_any_order():
    signature = resolve(["a", "b"], "TOTAL", input_names="b:values,a:Label")
    assert [(c.name, c.tensor) for c in signature.inputs] == [("a", "Label"), ("b", "values")]
    assert signature.inputs[1].data_type == D.ARRAY(D.FLOAT())


def test_input_names_swap_two_tensors():
    signature = resolve([("Label", D.ARRAY(D.FLOAT())), ("values", D.STRING())], "TOTAL",
                        input_names="Label:values,values:Label")
    assert [(c.name, c.tensor) for c in signature.inputs] == [("Label", "values"),
                                                              ("values", "Label")]


def test_input_names_with_derived_inputs():
    signature = resolve(input_names="v:values,l:Label")
    assert signature.inputs == (TensorColumn("v", D.ARRAY(D.FLOAT()), "values"),
                                TensorColumn("l", D.STRING(), "Label"))
    signature = resolve(input_names="Label,values")  # positional: columns named as tensors
    assert [(c.name, c.tensor) for c in signature.inputs] == [("Label", "Label"),
                                                              ("values", "values")]


def test_input_names_renaming_one_of_the_derived_inputs():
    signature = resolve(input_names="v:values")
    assert [(c.name, c.tensor) for c in signature.inputs] == [("v", "values"),
                                                              ("Label", "Label")]
    bind(signature, input_names="v:values")


def test_output_names_select_and_rename_derived_outputs():
    signature = resolve(MULTI_IO_DECLARED, output_names="total:TOTAL")
    assert signature.outputs == (TensorColumn("total", D.DOUBLE(), "TOTAL"),)
    assert signature.row_output is False
    assert signature.result_type == D.DOUBLE()
    assert signature.describe().endswith(" -> 'total' DOUBLE -> tensor 'TOTAL'")

    signature = resolve(MULTI_IO_DECLARED, output_names="n:Count,total:TOTAL")
    assert signature.outputs == (TensorColumn("n", D.BIGINT(), "Count"),
                                 TensorColumn("total", D.DOUBLE(), "TOTAL"))
    assert signature.row_output is True
    assert signature.result_type == D.ROW([D.FIELD("n", D.BIGINT()),
                                           D.FIELD("total", D.DOUBLE())])


def test_output_names_positional_select_derived_outputs_in_order():
    signature = resolve(MULTI_IO_DECLARED, output_names="Count,TOTAL")
    assert [(c.name, c.tensor) for c in signature.outputs] == [("Count", "Count"),
                                                               ("TOTAL", "TOTAL")]
    assert signature.row_output is True


def test_output_names_with_declared_row():
    signature = resolve(MULTI_IO_DECLARED, [("sum", D.DOUBLE()), ("n", D.BIGINT())],
                        output_names="TOTAL,Count")
    assert signature.outputs == (TensorColumn("sum", D.DOUBLE(), "TOTAL"),
                                 TensorColumn("n", D.BIGINT(), "Count"))
    assert signature.result_type == D.ROW([D.FIELD("sum", D.DOUBLE()),
                                           D.FIELD("n", D.BIGINT())])


def test_output_names_with_declared_single_output():
    signature = resolve(MULTI_IO_DECLARED, "upper", output_names="upper:label_Upper")
    assert signature.outputs == (TensorColumn("upper", D.STRING(), "label_Upper"),)
    assert signature.row_output is False


def test_quoted_names_with_separators():
    metadata, config = served_model([("a,b", "FP32", [1]), ("c:d", "INT32", [1])],
                                    [("x:y", "FP64", [1])])
    signature = resolve(["first", "second"], "out", served=Served(metadata, config), model=MM,
                        input_names="'a,b',\"'c:d'\"", output_names="\"out:'x:y'\"")
    assert [(c.name, c.tensor) for c in signature.inputs] == [("first", "a,b"),
                                                              ("second", "c:d")]
    assert signature.outputs == (TensorColumn("out", D.DOUBLE(), "x:y"),)
    bind(signature, metadata, config, model=MM, input_names="'a,b',\"'c:d'\"",
         output_names="\"out:'x:y'\"")


# --- resolve: errors -----------------------------------------------------------------------------

@pytest.mark.parametrize("names, columns", [("values", "a, b"), ("x,y,z", "a, b")])
def test_positional_names_must_match_the_column_count(names, columns):
    message = config_error([("a", D.ARRAY(D.FLOAT())), ("b", D.STRING())], "TOTAL",
                           input_names=names)
    count = len(names.split(","))
    assert message == (f"'input-names' lists {count} tensor(s) by position, but there are "
                       f"2 input column(s) ({columns}).")


def test_positional_output_names_must_match_the_declared_outputs():
    message = config_error(MULTI_IO_DECLARED, "TOTAL", output_names="TOTAL,Count")
    assert "'output-names' lists 2 tensor(s) by position" in message
    assert "1 output column(s) (TOTAL)" in message


def test_by_name_mapping_of_unknown_columns():
    message = config_error([("a", D.ARRAY(D.FLOAT())), ("b", D.STRING())], "TOTAL",
                           input_names="a:values,x:Label")
    assert message == ("'input-names' maps column(s) ['x'], which are not input columns; the "
                       "input columns are ['a', 'b'].")
    message = config_error(MULTI_IO_DECLARED, ["sum"], output_names="total:TOTAL")
    assert "'output-names' maps column(s) ['total']" in message
    assert "the output columns are ['sum']" in message


@pytest.mark.parametrize("inputs, output, repeated, kind", [
    (["values", "values"], "TOTAL", "['values']", "input"),
    ([("values", D.ARRAY(D.FLOAT())), "values"], "TOTAL", "['values']", "input"),
    (MULTI_IO_DECLARED, ["TOTAL", "Count", "TOTAL"], "['TOTAL']", "output"),
])
def test_column_declared_twice(inputs, output, repeated, kind):
    assert config_error(inputs, output) == f"The {kind} column(s) {repeated} are declared twice."


def test_column_names_are_case_sensitive():
    signature = resolve([("label", D.ARRAY(D.FLOAT())), ("Label", D.STRING())], "TOTAL",
                        input_names="label:values")
    assert [c.name for c in signature.inputs] == ["label", "Label"]


def test_two_columns_bound_to_one_tensor():
    """'a' is mapped to 'values', the tensor the column 'values' feeds by its own name."""
    message = config_error([("a", D.ARRAY(D.FLOAT())), ("values", D.STRING())], "TOTAL",
                           input_names="a:values")
    assert message == "The input tensor(s) ['values'] are bound to two columns."


def test_name_option_binding_one_tensor_twice_is_refused_by_the_option():
    with pytest.raises(TritonConfigError, match="tensor Label appears twice"):
        resolve(["a", "b"], "TOTAL", input_names="a:Label,b:Label")


def test_two_outputs_bound_to_one_tensor():
    message = config_error(MULTI_IO_DECLARED, ["TOTAL", ("t", D.DOUBLE())],
                           output_names="t:TOTAL")
    assert message == "The output tensor(s) ['TOTAL'] are bound to two columns."


@pytest.mark.parametrize("inputs, output, kind, tensor, column", [
    (["vals", "Label"], "TOTAL", "input", "vals", "vals"),
    (["values", "label"], "TOTAL", "input", "label", "label"),  # case-sensitive
    (MULTI_IO_DECLARED, "total", "output", "total", "total"),
    (MULTI_IO_DECLARED, ["TOTAL", "Nope"], "output", "Nope", "Nope"),
])
def test_undeclared_type_of_an_unknown_tensor(inputs, output, kind, tensor, column):
    message = config_error(inputs, output)
    served = {"input": "values, Label", "output": "TOTAL, label_Upper, Count"}[kind]
    assert message == (f"Model 'multi_io' has no {kind} tensor '{tensor}' for column "
                       f"'{column}' (names are case-sensitive); its {kind}s are: {served}.")


def test_name_option_pointing_at_an_unknown_tensor():
    message = config_error(input_names="v:vals,Label:Label")
    assert "no input tensor 'vals' for column 'v'" in message
    message = config_error(MULTI_IO_DECLARED, output_names="n:COUNT")
    assert "no output tensor 'COUNT' for column 'n'" in message


def test_served_datatype_without_flink_type():
    metadata, config = served_model([("A", "FP8", [1])], [("Y", "FP32", [1])])
    message = config_error(served=Served(metadata, config), model=MM)
    assert message == ("The input tensor 'A' of model 'mm' has a datatype with no Flink type; "
                       "declare the column's type explicitly.")
    # declaring it does not help: the fetched metadata is checked at registration
    message = config_error([("A", D.FLOAT())], served=Served(metadata, config), model=MM)
    assert "Column 'A' (FLOAT) does not fit input tensor 'A'" in message
    assert "found FP8." in message


@pytest.mark.parametrize("declaration", [
    ["values", "FLOAT"],  # a list is not a (name, type) pair
    ("values",),
    ("values", D.FLOAT(), "extra"),
    (1, D.FLOAT()),
    42,
    None,
], ids=repr)
def test_invalid_input_declaration(declaration):
    message = config_error([declaration], "TOTAL")
    assert message == (f"Invalid input declaration {declaration!r}: expected a name or a "
                       "(name, Flink type) tuple.")


@pytest.mark.parametrize("output", [
    [["TOTAL", "DOUBLE"]],
    ("TOTAL",),
    7,
    [("TOTAL", D.DOUBLE()), ["Count"]],
], ids=repr)
def test_invalid_output_declaration(output):
    message = config_error(MULTI_IO_DECLARED, output)
    assert message.startswith("Invalid output declaration ")
    assert message.endswith("expected a name or a (name, Flink type) tuple, or a list of these "
                            "for a ROW result.")


def test_no_inputs_declared():
    assert config_error([], "TOTAL") == "Model 'multi_io' has no inputs to map columns to."


def test_no_outputs_declared():
    assert config_error(MULTI_IO_DECLARED, []) == "Model 'multi_io' has no outputs to return."


def test_model_without_inputs_or_outputs():
    metadata, config = served_model([], [("Y", "FP32", [1])])
    message = config_error(served=Served(metadata, config), model=ModelRef("mm", "2"))
    assert message == "Model 'mm' version 2 has no inputs to map columns to."
    metadata, config = served_model([("A", "FP32", [1])], [])
    assert config_error(served=Served(metadata, config), model=MM) == (
        "Model 'mm' has no outputs to return.")


def test_only_optional_inputs():
    metadata, config = served_model([("A", "FP32", [1])], [("Y", "FP32", [1])],
                                    optional=("A",))
    assert "has no inputs to map columns to" in config_error(served=Served(metadata, config),
                                                             model=MM)


def test_fetch_error_propagates():
    def unreachable():
        raise TritonConfigError("cannot derive")

    with pytest.raises(TritonConfigError, match="cannot derive"):
        ModelSignature.resolve(MULTI_IO, options(), None, "TOTAL", unreachable)


# --- bind: success -------------------------------------------------------------------------------

def test_bind_derived_multi_io():
    bound = bind(resolve())
    assert isinstance(bound, BoundSignature)
    assert bound.row_output is True
    values, label = bound.inputs
    assert values == InputCodec(TensorColumn("values", D.ARRAY(D.FLOAT())), "FP32", 0, (-1,),
                                True, True)
    assert label == InputCodec(TensorColumn("Label", D.STRING()), "BYTES", 0, (1,), True, True)
    assert bound.outputs == (
        OutputCodec(TensorColumn("TOTAL", D.DOUBLE()), "FP64", True, True),
        OutputCodec(TensorColumn("label_Upper", D.STRING()), "BYTES", True, True),
        OutputCodec(TensorColumn("Count", D.BIGINT()), "INT64", True, True),
    )


def test_bound_codecs_encode_and_decode_multi_io():
    bound = bind(resolve())
    values, label = (codec.encode(v) for codec, v in zip(bound.inputs, ([1.0, 2.5], "hé"),
                                                         strict=True))
    assert (values.name, values.datatype, values.shape) == ("values", "FP32", [1, 2])
    assert (label.name, label.datatype, label.shape) == ("Label", "BYTES", [1, 1])
    assert [o.column.tensor for o in bound.outputs] == [
        "TOTAL", "label_Upper", "Count"]
    total, upper, count = bound.outputs
    assert total.decode(np.array([[3.5]]), "multi_io") == 3.5
    assert upper.decode(np.array([[b"H\xc3\x89"]], dtype=np.object_), "multi_io") == "HÉ"
    assert count.decode(np.array([[2]], dtype=np.int64), "multi_io") == 2


def test_bind_binary_data_false():
    bound = bind(resolve(binary_data="false"), binary_data="false")
    assert all(not c.binary for c in [*bound.inputs, *bound.outputs])
    assert http_input(bound.inputs[1].encode("x"), False)._get_tensor()["data"] == ["x"]


def test_bind_selected_and_renamed_outputs():
    signature = resolve(MULTI_IO_DECLARED, output_names="n:Count")
    bound = bind(signature, output_names="n:Count")
    assert bound.row_output is False
    (count,) = bound.outputs
    assert count.column == TensorColumn("n", D.BIGINT(), "Count")
    assert count.column.tensor == "Count"


def test_bind_renamed_inputs():
    signature = resolve([("v", D.ARRAY(D.FLOAT())), ("l", D.STRING())], "TOTAL",
                        input_names="values,Label")
    bound = bind(signature, input_names="values,Label")
    assert [c.encode(v).name for c, v in zip(bound.inputs, ([1.0], "a"), strict=True)] == [
        "values", "Label"]


def test_bind_leaves_optional_inputs_out():
    metadata, config = served_model([("A", "FP32", [1]), ("MASK", "BOOL", [-1])],
                                    [("Y", "FP32", [1])], optional=("MASK",))
    bound = bind(declared([("A", D.FLOAT())], ("Y", D.FLOAT())), metadata, config, MM)
    assert [c.column.tensor for c in bound.inputs] == ["A"]


def test_bind_unbatched_cube():
    bound = bind(resolve(served=Served(CUBE_METADATA, CUBE_CONFIG), model=CUBE), CUBE_METADATA,
                 CUBE_CONFIG, CUBE)
    (codec,) = bound.inputs
    assert (codec.leading_ones, codec.dims, codec.batched) == (0, (-1, -1, -1), False)
    assert codec.encode([[[1, 2]], [[3, 4]]]).shape == [2, 1, 2]
    assert bound.outputs[0].decode(np.zeros((1, 2, 1), dtype=np.int32), "c") == [[[0], [0]]]


@pytest.mark.parametrize("data_type, dims, max_batch_size, leading, value_dims, value, shape", [
    (D.FLOAT(), [1], 0, 0, (1,), 1.0, [1]),
    (D.FLOAT(), [1], 8, 0, (1,), 1.0, [1, 1]),
    (D.FLOAT(), [1, 1], 0, 0, (1, 1), 1.0, [1, 1]),
    (D.FLOAT(), [-1], 0, 0, (1,), 1.0, [1]),  # a variable dim takes the scalar as one element
    (D.FLOAT(), [1, -1], 4, 0, (1, 1), 1.0, [1, 1, 1]),
    (D.FLOAT(), [], 0, 0, (), 1.0, []),
    (D.ARRAY(D.FLOAT()), [-1], 0, 0, (-1,), [1.0, 2.0], [2]),
    (D.ARRAY(D.FLOAT()), [1, -1], 0, 1, (-1,), [1.0, 2.0], [1, 2]),
    (D.ARRAY(D.FLOAT()), [1, 1, 3], 2, 2, (3,), [1.0, 2.0, 3.0], [1, 1, 1, 3]),
    (D.ARRAY(D.FLOAT()), [-1, 3], 0, 1, (3,), [1.0, 2.0, 3.0], [1, 3]),  # -1 sent as 1
    (D.ARRAY(D.ARRAY(D.FLOAT())), [1, 3, -1], 0, 1, (3, -1), [[1.0]] * 3, [1, 3, 1]),
    (D.ARRAY(D.ARRAY(D.INT())), [-1, 2], 8, 0, (-1, 2), [[1, 2]], [1, 1, 2]),
])
def test_bind_input_shapes(data_type, dims, max_batch_size, leading, value_dims, value, shape):
    datatype = "INT32" if "Int" in repr(TensorColumn("c", data_type).element_type) else "FP32"
    metadata, config = served_model([("IN", datatype, dims)], [("OUT", "FP32", [1])],
                                    max_batch_size)
    bound = bind(declared([("IN", data_type)], ("OUT", D.FLOAT())), metadata, config, MM)
    (codec,) = bound.inputs
    assert (codec.leading_ones, codec.dims, codec.batched) == (
        leading, value_dims, max_batch_size > 0)
    assert codec.encode(value).shape == shape


@pytest.mark.parametrize("data_type, dims", [
    (D.FLOAT(), [1]), (D.FLOAT(), [-1]), (D.FLOAT(), [1, 1]),
    (D.ARRAY(D.FLOAT()), [-1]), (D.ARRAY(D.FLOAT()), [2, 3]),  # rank 1 takes any shape
    (D.ARRAY(D.FLOAT()), [1, 1, 1]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), [1, 2, 3]), (D.ARRAY(D.ARRAY(D.FLOAT())), [-1, -1, 3]),
])
@pytest.mark.parametrize("max_batch_size", [0, 2])
def test_bind_output_shapes(data_type, dims, max_batch_size):
    metadata, config = served_model([("IN", "FP32", [1])], [("OUT", "FP32", dims)],
                                    max_batch_size)
    bound = bind(declared([("IN", D.FLOAT())], ("OUT", data_type)), metadata, config, MM)
    assert bound.outputs == (OutputCodec(TensorColumn("OUT", data_type), "FP32",
                                         max_batch_size > 0, True),)


@pytest.mark.parametrize("column_type, datatype", [
    (D.SMALLINT(), "UINT8"), (D.INT(), "UINT16"), (D.BIGINT(), "UINT32"),
    (D.BIGINT(), "UINT64"), (D.DECIMAL(5, 0), "UINT64"), (D.DECIMAL(20, 0), "UINT64"),
    (D.BYTES(), "BYTES"), (D.CHAR(3), "BYTES"), (D.ARRAY(D.BOOLEAN()), "BOOL"),
])
def test_bind_accepts_other_column_types_for_inputs(column_type, datatype):
    dims = [-1] if TensorColumn("IN", column_type).rank else [1]
    metadata, config = served_model([("IN", datatype, dims)], [("OUT", "FP32", [1])])
    (codec,) = bind(declared([("IN", column_type)], ("OUT", D.FLOAT())), metadata, config,
                    MM).inputs
    assert codec.datatype == datatype


@pytest.mark.parametrize("column_type, datatype", [
    (D.SMALLINT(), "UINT8"), (D.INT(), "UINT16"), (D.BIGINT(), "UINT32"),
    (D.DECIMAL(20, 0), "UINT64"), (D.DECIMAL(38, 0), "UINT64"),
    (D.FLOAT(), "FP16"), (D.FLOAT(), "BF16"),  # outputs need no 'half-precision-inputs'
    (D.VARBINARY(5), "BYTES"),
])
def test_bind_accepts_other_column_types_for_outputs(column_type, datatype):
    metadata, config = served_model([("IN", "FP32", [1])], [("OUT", datatype, [1])])
    (codec,) = bind(declared([("IN", D.FLOAT())], ("OUT", column_type)), metadata, config,
                    MM).outputs
    assert codec.datatype == datatype


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_precision_inputs_allows_float_columns(datatype):
    metadata, config = served_model([("IN", datatype, [-1])], [("OUT", datatype, [-1])])
    signature = declared([("IN", D.ARRAY(D.FLOAT()))], ("OUT", D.ARRAY(D.FLOAT())))
    bound = bind(signature, metadata, config, MM, half_precision_inputs="true")
    assert bound.inputs[0].datatype == datatype
    assert bound.inputs[0].encode([0.1, 1e6]).datatype == datatype


def test_flatten_batch_dim_with_an_unbatched_model_is_fine():
    metadata, config = served_model([("A", "FP32", [-1]), ("B", "FP32", [1])],
                                    [("Y", "FP32", [1, 3])])
    signature = declared([("A", D.ARRAY(D.FLOAT())), ("B", D.FLOAT())], ("Y", D.ARRAY(D.FLOAT())))
    bound = bind(signature, metadata, config, MM, flatten_batch_dim="true")
    assert bound.inputs[0].encode([1.0, 2.0]).shape == [2]
    assert bound.inputs[1].encode(1.0).shape == [1]


def test_bind_twice_gives_equal_results():
    signature = resolve()
    assert bind(signature) == bind(signature)


# --- bind: errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("inputs, output, column, kind, tensor, key", [
    ([("vals", D.ARRAY(D.FLOAT())), ("Label", D.STRING())], ("TOTAL", D.DOUBLE()),
     "'vals' (ARRAY<FLOAT>)", "input", "vals", "input-names"),
    ([("values", D.ARRAY(D.FLOAT())), ("label", D.STRING())], ("TOTAL", D.DOUBLE()),
     "'label' (STRING)", "input", "label", "input-names"),  # names are case-sensitive
    (MULTI_IO_DECLARED, ("total", D.DOUBLE()), "'total' (DOUBLE)", "output", "total",
     "output-names"),
    (MULTI_IO_DECLARED, [("TOTAL", D.DOUBLE()), ("values", D.FLOAT())], "'values' (FLOAT)",
     "output", "values", "output-names"),  # an input is no output
])
def test_bind_unknown_tensor(inputs, output, column, kind, tensor, key):
    message = bind_error(declared(inputs, output), signature_line=MULTI_IO_SIGNATURE)
    assert message == (
        f"Model 'multi_io': Column {column} is bound to {kind} tensor '{tensor}', which the "
        f"model does not have (names are case-sensitive; map other names with '{key}').\n"
        f"{MULTI_IO_SIGNATURE}")


def test_bind_unknown_tensor_after_renaming():
    renamed = ModelSignature.resolve(MULTI_IO, options(input_names="v:VALUES"),
                                     [("v", D.ARRAY(D.FLOAT())), ("Label", D.STRING())],
                                     ("TOTAL", D.DOUBLE()), never_fetched)
    message = bind_error(renamed, signature_line=MULTI_IO_SIGNATURE)
    assert "Column 'v' (ARRAY<FLOAT>) is bound to input tensor 'VALUES'" in message
    assert "'input-names'" in message


@pytest.mark.parametrize("column_type, kind, datatype, expected", [
    (D.INT(), "input", "FP32", "INT32, or UINT16"),
    (D.DOUBLE(), "input", "FP32", "FP64"),
    (D.FLOAT(), "input", "FP64", "FP32, or FP16/BF16 with 'half-precision-inputs' = 'true'"),
    (D.FLOAT(), "output", "FP64", "FP16, or BF16, or FP32"),
    (D.STRING(), "output", "INT64", "BYTES"),
    (D.BYTES(), "input", "UINT8", "BYTES"),
    (D.BOOLEAN(), "input", "INT8", "BOOL"),
    (D.TINYINT(), "output", "UINT8", "INT8"),
    (D.SMALLINT(), "input", "UINT16", "INT16, or UINT8"),
    (D.BIGINT(), "output", "UINT64", "INT64, or UINT32"),  # could overflow: DECIMAL(20, 0)
    (D.BIGINT(), "input", "INT32", "INT64, or UINT32, or UINT64"),
    (D.DECIMAL(20, 0), "input", "INT64", "UINT64"),
    (D.INT(), "output", "UINT32", "INT32, or UINT16"),
    (D.ARRAY(D.INT()), "input", "INT64", "INT32, or UINT16"),
    (D.DOUBLE(), "output", "FP16", "FP64"),
    (D.INT(), "input", "FP8", "INT32, or UINT16"),  # a datatype unknown to the codec
])
def test_bind_datatype_mismatch(column_type, kind, datatype, expected):
    dims = [-1] if TensorColumn("c", column_type).rank else [1]
    if kind == "input":  # column 'c' feeds tensor 'T'
        metadata, config = served_model([("T", datatype, dims)], [("Y", "FP32", [1])])
        signature = declared([("c", column_type)], ("Y", D.FLOAT()), input_names="c:T")
    else:
        metadata, config = served_model([("X", "FP32", [1])], [("T", datatype, dims)])
        signature = declared([("X", D.FLOAT())], ("c", column_type), output_names="c:T")
    message = bind_error(signature, metadata, config, MM)
    assert message.splitlines()[0] == (
        f"Model 'mm': Column 'c' ({sql_type(column_type)}) does not fit {kind} tensor 'T': "
        f"expected {expected}, found {datatype}.")
    assert "to allow it" not in message  # the half-precision hint is for FLOAT only


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
@pytest.mark.parametrize("column_type", [D.FLOAT(), D.ARRAY(D.FLOAT())], ids=str)
def test_bind_half_precision_input_needs_the_option(datatype, column_type):
    dims = [-1] if TensorColumn("X", column_type).rank else [1]
    metadata, config = served_model([("X", datatype, dims)], [("Y", "FP32", [1])],
                                    max_batch_size=4)
    message = bind_error(declared([("X", column_type)], ("Y", D.FLOAT())), metadata, config, MM)
    assert "does not fit input tensor 'X': expected FP32, or FP16/BF16 with " in message
    assert f"found {datatype}. FLOAT values would be rounded to {datatype}: set " \
           "'half-precision-inputs' = 'true' to allow it." in message


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
@pytest.mark.parametrize("kind", ["input", "output"])
def test_bind_half_precision_needs_binary_data(datatype, kind):
    tensors = {"input": ([("T", datatype, [1])], [("Y", "FP32", [1])]),
               "output": ([("X", "FP32", [1])], [("T", datatype, [1])])}[kind]
    metadata, config = served_model(*tensors)
    signature = declared([("T" if kind == "input" else "X", D.FLOAT())],
                         ("T" if kind == "output" else "Y", D.FLOAT()))
    message = bind_error(signature, metadata, config, MM, half_precision_inputs="true",
                         binary_data="false")
    assert f"does not fit {kind} tensor 'T': expected 'binary-data' = 'true'" in message
    assert f"no {datatype} in JSON form" in message
    assert f"found {datatype} with 'binary-data' = 'false'" in message


@pytest.mark.parametrize("precision", [1, 10, 19])
def test_bind_decimal_output_needs_precision_20(precision):
    metadata, config = served_model([("X", "FP32", [1])], [("Y", "UINT64", [1])])
    message = bind_error(declared([("X", D.FLOAT())], ("Y", D.DECIMAL(precision, 0))),
                         metadata, config, MM)
    assert message.splitlines()[0] == (
        f"Model 'mm': Column 'Y' (DECIMAL({precision}, 0)) does not fit output tensor 'Y': "
        "expected UINT64 into DECIMAL(20, 0) or wider, found UINT64.")


@pytest.mark.parametrize("kind", ["input", "output"])
@pytest.mark.parametrize("dims", [[3], [2, 1], [1, 4], [-1, 2]])
def test_bind_scalar_column_needs_dims_of_one(kind, dims):
    if kind == "input":
        metadata, config = served_model([("T", "FP32", dims)], [("Y", "FP32", [1])], 8)
        signature = declared([("T", D.FLOAT())], ("Y", D.FLOAT()))
    else:
        metadata, config = served_model([("X", "FP32", [1])], [("T", "FP32", dims)], 8)
        signature = declared([("X", D.FLOAT())], ("T", D.FLOAT()))
    message = bind_error(signature, metadata, config, MM)
    assert message.splitlines()[0] == (
        f"Model 'mm': Column 'T' (FLOAT) does not fit {kind} tensor 'T': expected dims of "
        f"size 1 (a scalar), found dims {dims} (after the batch dimension); declare the "
        "column as an ARRAY.")
    assert f"T FP32 {[-1, *dims]}" in message.splitlines()[-1]


@pytest.mark.parametrize("kind", ["input", "output"])
@pytest.mark.parametrize("column_type, dims", [
    (D.ARRAY(D.ARRAY(D.FLOAT())), [-1]),  # rank too high
    (D.ARRAY(D.ARRAY(D.ARRAY(D.FLOAT()))), [-1, -1]),
    (D.ARRAY(D.ARRAY(D.FLOAT())), [2, 3, 4]),  # leading dim not 1
    (D.ARRAY(D.ARRAY(D.FLOAT())), [1, 2, 1, 4]),
])
def test_bind_array_column_rank(kind, column_type, dims):
    if kind == "input":
        metadata, config = served_model([("T", "FP32", dims)], [("Y", "FP32", [1])])
        signature = declared([("T", column_type)], ("Y", D.FLOAT()))
    else:
        metadata, config = served_model([("X", "FP32", [1])], [("T", "FP32", dims)])
        signature = declared([("X", D.FLOAT())], ("T", column_type))
    message = bind_error(signature, metadata, config, MM)
    rank = TensorColumn("T", column_type).rank
    assert f"does not fit {kind} tensor 'T': expected a tensor of {rank} dimension(s) (plus " \
           f"leading dims of 1), found dims {dims}." in message


@pytest.mark.parametrize("dims", [[3, -1], [2, 1, -1]])
def test_bind_rank_one_input_with_leading_dims_not_one(dims):
    metadata, config = served_model([("T", "FP32", dims)], [("Y", "FP32", [1])])
    message = bind_error(declared([("T", D.ARRAY(D.FLOAT()))], ("Y", D.FLOAT())), metadata,
                         config, MM)
    assert f"expected a tensor of 1 dimension(s) (plus leading dims of 1), found dims {dims}." \
           in message


def test_bind_missing_required_input():
    message = bind_error(declared([("values", D.ARRAY(D.FLOAT()))], ("TOTAL", D.DOUBLE())),
                         signature_line=MULTI_IO_SIGNATURE)
    assert message.splitlines()[0] == (
        "Model 'multi_io': No column feeds its required input(s) ['Label']; the function's "
        "input columns are: 'values' ARRAY<FLOAT>. Declare a column for each input (or "
        "map names with 'input-names').")


def test_bind_missing_required_inputs_lists_all_of_them():
    metadata, config = served_model(
        [("A", "FP32", [1]), ("B", "FP32", [1]), ("OPT", "FP32", [1]), ("C", "FP32", [1])],
        [("Y", "FP32", [1])], optional=("OPT",))
    message = bind_error(declared([("x", D.FLOAT())], ("Y", D.FLOAT())), metadata, config, MM)
    assert "Column 'x' (FLOAT) is bound to input tensor 'x'" in message  # checked first
    message = bind_error(declared([("B", D.FLOAT())], ("Y", D.FLOAT())), metadata, config, MM)
    assert "required input(s) ['A', 'C']" in message


def test_flatten_batch_dim_with_a_batched_model():
    message = bind_error(resolve(), flatten_batch_dim="true", signature_line=MULTI_IO_SIGNATURE)
    assert message.splitlines()[0] == (
        "Model 'multi_io': 'flatten-batch-dim' = 'true' asserts that the model takes no batch "
        "dimension, but its config has max_batch_size 8, so Triton requires one. Remove the "
        "option: shapes follow the model's config.")


@pytest.mark.parametrize("dims", [[1, -1], [-1, 3], [1, 1, 2]])
def test_flatten_batch_dim_with_leading_ones(dims):
    metadata, config = served_model([("T", "FP32", dims)], [("Y", "FP32", [1])])
    message = bind_error(declared([("T", D.ARRAY(D.FLOAT()))], ("Y", D.FLOAT())), metadata,
                         config, MM, flatten_batch_dim="true")
    assert message.splitlines()[0] == (
        "Model 'mm': Column 'T' (ARRAY<FLOAT>) does not fit input tensor 'T': expected no "
        f"leading dims of 1 ('flatten-batch-dim' = 'true'), found dims {dims}.")


def test_bind_error_names_the_model_version():
    message = bind_error(declared([("x", D.FLOAT())], ("TOTAL", D.DOUBLE())),
                         model=ModelRef("multi_io", "3"), signature_line=MULTI_IO_SIGNATURE)
    assert message.startswith("Model 'multi_io' version 3: Column 'x' (FLOAT)")


def test_bind_error_signature_of_an_unbatched_model():
    message = bind_error(declared([("x", D.FLOAT())], ("OUTPUT0", D.FLOAT())), CUBE_METADATA,
                         CUBE_CONFIG, CUBE, signature_line=CUBE_SIGNATURE)
    assert message.startswith("Model 'identity_int32_cube': Column 'x' (FLOAT)")


def test_bind_error_signature_of_an_empty_model():
    metadata, config = served_model([], [])
    message = bind_error(declared([("x", D.FLOAT())], ("y", D.FLOAT())), metadata, config, MM)
    assert message.splitlines()[-1] == (
        "The model's signature (max_batch_size 0: no batch dimension): inputs [(none)], "
        "outputs [(none)].")


def test_bind_error_with_metadata_missing_lists():
    message = bind_error(declared([("x", D.FLOAT())], ("y", D.FLOAT())),
                         {"name": "mm"}, {}, MM)
    assert message.splitlines()[-1].endswith("inputs [(none)], outputs [(none)].")


# --- every derived signature binds to the model it came from -------------------------------------

DATATYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64",
             "FP16", "BF16", "FP32", "FP64", "BYTES"]
SAMPLE = {"BOOL": True, "UINT64": Decimal(7), "FP16": 0.5, "BF16": 0.5, "FP32": 0.5,
          "FP64": 0.5, "BYTES": "s"}


@st.composite
def tensors(draw, prefix: str):
    count = draw(st.integers(1, 3))
    return [(f"{prefix}{i}", draw(st.sampled_from(DATATYPES)),
             draw(st.lists(st.sampled_from([1, -1, 2, 3]), min_size=1, max_size=3)))
            for i in range(count)]


def nested(value, shape):
    return value if not shape else [nested(value, shape[1:]) for _ in range(shape[0])]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=tensors("in"), outputs=tensors("out"), max_batch_size=st.sampled_from([0, 8]),
       sizes=st.lists(st.integers(0, 2), min_size=3, max_size=3))
def test_derived_signature_binds_and_encodes_the_served_shapes(inputs, outputs, max_batch_size,
                                                                sizes):
    metadata, config = served_model(inputs, outputs, max_batch_size)
    signature = resolve(served=Served(metadata, config), model=MM, half_precision_inputs="true")
    bound = bind(signature, metadata, config, MM, half_precision_inputs="true")
    assert len(bound.inputs) == len(inputs)
    assert len(bound.outputs) == len(outputs)
    assert bound.row_output is (len(outputs) > 1)
    for codec, (_, datatype, dims) in zip(bound.inputs, inputs, strict=True):
        # a value whose own dims are the model's, -1 filled in with some size (0 to 2)
        prefix = [1] * (max_batch_size > 0)
        if not codec.column.rank:  # a scalar: every dim sent as 1
            value, expected = SAMPLE.get(datatype, 1), prefix + [1] * len(dims)
        else:
            own = dims[len(dims) - codec.column.rank:]
            value_shape = [sizes[i] if d == -1 else d for i, d in enumerate(own)]
            value = nested(SAMPLE.get(datatype, 1), value_shape)
            if 0 in value_shape:  # inside an empty array: the model's fixed sizes, else 0
                empty = value_shape.index(0)
                value_shape[empty:] = [max(d, 0) for d in own[empty:]]
                value_shape[empty] = 0
            expected = prefix + [1] * (len(dims) - len(own)) + value_shape
        tensor = codec.encode(value)
        assert tensor.shape == expected
        assert tensor.datatype == datatype
    for codec, (_, datatype, dims) in zip(bound.outputs, outputs, strict=True):
        shape = [1] * (max_batch_size > 0) + [2 if d == -1 else d for d in dims]
        array = np.zeros(shape, dtype=np.object_ if datatype == "BYTES" else np.float32)
        if datatype == "BYTES":
            array[...] = b"x"
        decoded = codec.decode(array, "mm")
        assert np.size(decoded) == (1 if not codec.column.rank else np.prod(shape))


@settings(max_examples=60, deadline=None)
@given(inputs=tensors("in"), outputs=tensors("out"))
def test_derived_half_precision_inputs_need_the_option(inputs, outputs):
    metadata, config = served_model(inputs, outputs)
    half = [name for name, datatype, _ in inputs if datatype in ("FP16", "BF16")]
    if not half:
        bind(resolve(served=Served(metadata, config), model=MM), metadata, config, MM)
        return
    message = config_error(served=Served(metadata, config), model=MM)  # found at registration
    assert f"input tensor '{half[0]}'" in message
    assert "'half-precision-inputs' = 'true'" in message


@pytest.mark.parametrize("dims", [[-1, 1], [-1, 1, 1]])
def test_bind_array_for_a_variable_dim_followed_by_ones(dims):
    """ARRAY<FLOAT> for [-1, 1] would put the values on the dim of size 1: refused at open()."""
    metadata, config = served_model([("X", "FP32", dims)], [("Y", "FP32", [1])])
    message = bind_error(declared([("X", D.ARRAY(D.FLOAT()))], ("Y", D.FLOAT())),
                         metadata, config, MM)
    assert message.splitlines()[0] == (
        f"Model 'mm': Column 'X' (ARRAY<FLOAT>) does not fit input tensor 'X': expected an "
        f"ARRAY of {len(dims)} level(s) (one per dim from the first that is not 1), found "
        f"dims {dims}.")
    bound = bind(declared([("X", D.ARRAY(D.ARRAY(D.FLOAT())))], ("Y", D.FLOAT())),
                 metadata, config, MM) if len(dims) == 2 else None
    if bound is not None:
        assert bound.inputs[0].encode([[1.0], [2.0]]).shape == [2, 1]
