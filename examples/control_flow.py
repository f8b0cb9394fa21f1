"""Control flow: a loop over a parameter, a condition inside it, and a fan-in.

ketch run examples/control_flow.py --param 'numbers=[3, 8, 15, 4]' --param threshold=5
"""

from kfp import dsl


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def label(x: int, threshold: int) -> str:
    return "big" if x > threshold else "small"


@dsl.component
def shout(x: int) -> str:
    print(f"{x} is big!")
    return f"BIG {x}"


@dsl.component
def total(squares: list) -> int:
    return sum(squares)


@dsl.component
def report(total: int, verdict: str) -> str:
    return f"{verdict}: {total}"


@dsl.pipeline(name="control-flow-demo")
def control_flow(numbers: list = [3, 8, 15, 4], threshold: int = 5) -> str:  # noqa: B006
    with dsl.ParallelFor(numbers, parallelism=2) as x:
        sq = square(x=x)
        kind = label(x=x, threshold=threshold)
        with dsl.If(kind.output == "big"):
            shout(x=x)
    summed = total(squares=dsl.Collected(sq.output))
    with dsl.If(summed.output > 100):
        high = report(total=summed.output, verdict="large total")
    with dsl.Else():
        low = report(total=summed.output, verdict="small total")
    return dsl.OneOf(high.output, low.output)


if __name__ == "__main__":
    import ketch

    run = ketch.run(control_flow)
    print(run.state, run.outputs)
