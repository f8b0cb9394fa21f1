"""The pipeline the run detail page's tests show: an evaluation that logs Metrics, a
confusion matrix and ROC points, a Markdown and an HTML artifact and a small CSV
Dataset; a ParallelFor of three; a condition that is not taken; and a task that waits
for a file (the test creates it) so that its state changes while the page is open."""

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Output


@dsl.component
def evaluate(
    metrics: Output[Metrics],
    matrix: Output[ClassificationMetrics],
    notes: Output[Markdown],
    report: Output[HTML],
    table: Output[Dataset],
) -> None:
    metrics.log_metric("accuracy", 0.875)
    metrics.log_metric("loss", 0.31)
    matrix.log_confusion_matrix(["cat", "dog"], [[7, 1], [2, 6]])
    matrix.log_roc_curve([0.0, 0.25, 1.0], [0.0, 0.8, 1.0], [0.9, 0.5, 0.1])
    with open(notes.path, "w") as f:
        f.write("# Evaluation\n\nAll **good** <script>alert(1)</script>\n")
    with open(report.path, "w") as f:
        f.write("<h1>Report</h1><p>made by evaluate</p>")
    with open(table.path, "w") as f:
        f.write("id,label\n1,cat\n2,dog\n3,cat\n")


@dsl.component
def count_rows(table: Input[Dataset]) -> int:
    with open(table.path) as f:
        return len(f.readlines()) - 1


@dsl.component
def square(x: int) -> int:
    return x * x


@dsl.component
def shout(text: str) -> str:
    return text.upper()


@dsl.component
def wait_for_file(path: str) -> str:
    import os
    import time

    print(f"waiting for {path}", flush=True)
    while path and not os.path.exists(path):
        time.sleep(0.1)
    print("the file is there", flush=True)
    return "done"


@dsl.pipeline(name="ui-detail")
def detail(gate: str = "", threshold: int = 100) -> None:
    evaluated = evaluate()
    count_rows(table=evaluated.outputs["table"])
    with dsl.ParallelFor([1, 2, 3]) as item:
        square(x=item)
    with dsl.If(threshold < 10):
        shout(text="never")
    wait_for_file(path=gate)
