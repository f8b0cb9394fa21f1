# ruff: noqa: UP045  (kfp reads typing.Optional; it rejects "X | None" annotations)
"""Parameter types: every IR parameter type, defaults, optional inputs, and ints that stay ints.

``kfp.local`` turns integers into floats when they pass through a loop or a
``Collected`` list; Ketch must keep ``type(x) is int`` everywhere.
"""

from typing import Optional

from kfp import dsl

import ketch


@dsl.component
def describe(
    s: str,
    i: int,
    f: float,
    b: bool,
    items: list,
    mapping: dict,
) -> str:
    import json

    assert type(s) is str, type(s)
    assert type(i) is int, type(i)
    assert type(f) is float, type(f)
    assert type(b) is bool, type(b)
    assert type(items) is list, type(items)
    assert type(mapping) is dict, type(mapping)
    assert [type(x).__name__ for x in items[:4]] == ["int", "float", "str", "bool"], items
    assert type(mapping["n"]) is int and type(mapping["nested"]["m"]) is int, mapping
    return json.dumps({"s": s, "i": i, "f": f, "b": b, "items": items, "mapping": mapping})


@dsl.component
def typed_outputs() -> dict:
    return {"n": 7, "x": 0.5, "ok": True, "list": [1, 2], "text": "t"}


@dsl.component
def produce_all(
    i: dsl.OutputPath(int),
    f: dsl.OutputPath(float),
    b: dsl.OutputPath(bool),
    items: dsl.OutputPath(list),
    mapping: dsl.OutputPath(dict),
    s: dsl.OutputPath(str),
):
    import json

    for path, value in [(i, 3), (f, 2.5), (b, False), (s, "text")]:
        with open(path, "w") as fh:
            fh.write(json.dumps(value) if not isinstance(value, str) else value)
    with open(items, "w") as fh:
        json.dump([1, 2.0, "three"], fh)
    with open(mapping, "w") as fh:
        json.dump({"k": 1}, fh)


def test_every_parameter_type_from_pipeline_arguments():
    @dsl.pipeline(name="all-types")
    def p(s: str, i: int, f: float, b: bool, items: list, mapping: dict) -> str:
        return describe(s=s, i=i, f=f, b=b, items=items, mapping=mapping).output

    args = {
        "s": "text",
        "i": 42,
        "f": 1.5,
        "b": True,
        "items": [1, 2.5, "x", False, None, {"k": 1}],
        "mapping": {"n": 1, "nested": {"m": 2}},
    }
    run = ketch.run(p, arguments=args)
    assert run.state == "SUCCEEDED", run.error
    import json

    assert json.loads(run.outputs["Output"]) == args
    inputs = run.tasks["describe"].inputs
    assert inputs == args
    assert type(inputs["i"]) is int
    assert type(inputs["items"][0]) is int


@dsl.component
def scalar_types(s: str, i: int, f: float, b: bool, items: list, mapping: dict) -> list:
    return [type(v).__name__ for v in (s, i, f, b, items, mapping)]


def test_defaults_for_every_type():
    @dsl.pipeline(name="all-defaults")
    def p(
        s: str = "d",
        i: int = 7,
        f: float = 0.25,
        b: bool = False,
        items: list = [3, 3.5, "s", True, {}],  # noqa: B006
        mapping: dict = {"n": 5, "nested": {"m": 6}},  # noqa: B006
    ) -> list:
        return scalar_types(s=s, i=i, f=f, b=b, items=items, mapping=mapping).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": ["str", "int", "float", "bool", "list", "dict"]}
    inputs = run.tasks["scalar-types"].inputs
    assert inputs["s"] == "d"
    assert inputs["i"] == 7 and type(inputs["i"]) is int
    assert inputs["f"] == 0.25
    assert inputs["b"] is False
    # the kfp compiler writes numbers inside list/dict defaults as doubles (3 -> 3.0),
    # so only the values are compared here
    assert inputs["items"] == [3, 3.5, "s", True, {}]
    assert inputs["mapping"] == {"n": 5, "nested": {"m": 6}}


def test_float_parameter_given_an_int_value_is_a_float():
    @dsl.component
    def is_float(f: float) -> str:
        return type(f).__name__

    @dsl.pipeline(name="float-from-int")
    def p(f: float) -> str:
        return is_float(f=f).output

    run = ketch.run(p, arguments={"f": 2})
    assert run.state == "SUCCEEDED", run.error
    # KFP stores NUMBER_DOUBLE as a double; the component sees a number either way
    assert run.outputs["Output"] in {"float", "int"}


def test_output_parameters_of_every_type():
    @dsl.pipeline(name="typed-outputs")
    def p():
        produce_all()

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    out = run.tasks["produce-all"].outputs
    assert out == {
        "i": 3,
        "f": 2.5,
        "b": False,
        "items": [1, 2.0, "three"],
        "mapping": {"k": 1},
        "s": "text",
    }
    assert type(out["i"]) is int
    assert type(out["items"][0]) is int
    assert type(out["b"]) is bool


def test_struct_output_keeps_inner_types():
    @dsl.component
    def check(d: dict) -> int:
        assert type(d["n"]) is int, d
        assert type(d["x"]) is float, d
        assert d["ok"] is True, d
        assert [type(v) for v in d["list"]] == [int, int], d
        return d["n"]

    @dsl.pipeline(name="struct-pass")
    def p() -> int:
        return check(d=typed_outputs().output).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 7}


@dsl.component
def optional_inputs(
    text: Optional[str] = None,
    number: Optional[int] = None,
    items: Optional[list] = None,
) -> str:
    return f"{text!r}|{number!r}|{items!r}"


def test_optional_inputs_none_and_set():
    @dsl.pipeline(name="optional-none")
    def p_none() -> str:
        return optional_inputs().output

    @dsl.pipeline(name="optional-set")
    def p_set(number: Optional[int] = None) -> str:
        return optional_inputs(text="t", number=number, items=["i"]).output

    run = ketch.run(p_none)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "None|None|None"}

    run = ketch.run(p_set, arguments={"number": 4})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "'t'|4|['i']"}

    run = ketch.run(p_set)  # optional pipeline parameter left out
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": "'t'|None|['i']"}


@dsl.component
def must_be_int(x: int) -> int:
    assert type(x) is int, f"{x!r} is a {type(x).__name__}"
    return x * 10


@dsl.component
def must_be_int_list(xs: list) -> int:
    assert all(type(x) is int for x in xs), [type(x).__name__ for x in xs]
    return sum(xs)


@dsl.component
def gen_ints(n: int) -> list:
    return list(range(n))


def _check_loop_ints(run, expected_sum: int, n: int, loop: str):
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": expected_sum}
    assert type(run.outputs["Output"]) is int
    assert run.tasks[loop].type == "loop"
    assert run.tasks[f"{loop}[0]"].type == "iteration"
    assert f"{loop}[{n}]" not in run.tasks
    for k in range(n):
        item_task = run.tasks[f"{loop}[{k}]/must-be-int"]
        assert item_task.state == "SUCCEEDED"
        assert type(item_task.inputs["x"]) is int
        assert type(item_task.outputs["Output"]) is int
    collected = run.tasks["must-be-int-list"].inputs["xs"]
    assert all(type(x) is int for x in collected), collected


def test_int_stays_int_in_loop_over_raw_list():
    @dsl.pipeline(name="ints-raw-list")
    def p() -> int:
        with dsl.ParallelFor([1, 2, 3]) as x:
            t = must_be_int(x=x)
        return must_be_int_list(xs=dsl.Collected(t.output)).output

    _check_loop_ints(ketch.run(p), 60, 3, "for-loop-2")


def test_int_stays_int_in_loop_over_pipeline_parameter():
    @dsl.pipeline(name="ints-param-list")
    def p(items: list) -> int:
        with dsl.ParallelFor(items) as x:
            t = must_be_int(x=x)
        return must_be_int_list(xs=dsl.Collected(t.output)).output

    _check_loop_ints(ketch.run(p, arguments={"items": [4, 5, 6]}), 150, 3, "for-loop-1")


def test_int_stays_int_in_loop_over_task_output():
    @dsl.pipeline(name="ints-task-output")
    def p(n: int = 4) -> int:
        g = gen_ints(n=n)
        with dsl.ParallelFor(g.output) as x:
            t = must_be_int(x=x)
        return must_be_int_list(xs=dsl.Collected(t.output)).output

    _check_loop_ints(ketch.run(p), 60, 4, "for-loop-1")


def test_int_stays_int_in_loop_over_dicts():
    @dsl.component
    def use_fields(a: int, b: int) -> int:
        assert type(a) is int, type(a)
        assert type(b) is int, type(b)
        return a * b

    @dsl.pipeline(name="ints-dict-items")
    def p() -> int:
        with dsl.ParallelFor([{"a": 1, "b": 10}, {"a": 2, "b": 20}]) as item:
            t = use_fields(a=item.a, b=item.b)
        return must_be_int_list(xs=dsl.Collected(t.output)).output

    run = ketch.run(p)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 50}
    assert run.tasks["for-loop-2[1]/use-fields"].inputs == {"a": 2, "b": 20}
    assert type(run.tasks["for-loop-2[1]/use-fields"].inputs["a"]) is int


def test_int_list_parameter_passed_whole():
    @dsl.pipeline(name="int-list-whole")
    def p(xs: list) -> int:
        return must_be_int_list(xs=xs).output

    run = ketch.run(p, arguments={"xs": [1, 2, 3]})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 6}
