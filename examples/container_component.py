"""A container component: its command runs on the host (the image is not used locally).

ketch run examples/container_component.py --param words='["local", "kubeflow"]'
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output, OutputPath


@dsl.container_component
def write_words(words: list, out: Output[Dataset]):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=[
            "sh",
            "-c",
            'mkdir -p "$(dirname "$1")" && echo "$0" | tr -d "[]\\"" | tr "," "\\n" > "$1"',
        ],
        args=[words, out.path],
    )


@dsl.container_component
def count_lines(data: Input[Dataset], count: OutputPath(int)):
    return dsl.ContainerSpec(
        image="alpine:3",
        command=["sh", "-c", 'mkdir -p "$(dirname "$1")" && wc -l < "$0" | tr -d " " > "$1"'],
        args=[data.path, count],
    )


@dsl.component
def describe(n: int, job: str) -> str:
    return f"{job} counted {n} words"


@dsl.pipeline(name="container-demo")
def container_demo(words: list = ["pipelines", "on", "a", "laptop"]) -> str:  # noqa: B006
    written = write_words(words=words)
    counted = count_lines(data=written.outputs["out"])
    return describe(n=counted.outputs["count"], job=dsl.PIPELINE_JOB_NAME_PLACEHOLDER).output


if __name__ == "__main__":
    import ketch

    run = ketch.run(container_demo)
    print(run.state, run.outputs)
