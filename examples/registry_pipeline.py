"""Train, evaluate, and register the model if it beats the one in production.

Prepares scikit-learn's bundled iris data set (no download), trains a logistic
regression, measures its accuracy on held-out rows, and registers it in Ketch's model
registry with the real ``model-registry`` client — as a new version, only when its
accuracy beats the latest LIVE version's. The task reaches the registry through
``KETCH_URL`` and ``KETCH_TOKEN``, which Ketch puts in every task's environment, and
the registry links the version to this run, the task that trained it and the data it
read (``GET /api/model_registry/v1/model_versions/<id>/lineage``)::

    ketch up &
    ketch run examples/registry_pipeline.py --server --param C=0.5
    ketch models versions iris-clf

Then serve the latest LIVE version, by name, with an InferenceService::

    spec:
      predictor:
        sklearn:
          storageUri: model-registry://iris-clf
          protocolVersion: v2
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output


@dsl.component(packages_to_install=["scikit-learn", "pandas"])
def prepare_data(seed: int, train_data: Output[Dataset], test_data: Output[Dataset]):
    """Split the iris data set into train and test CSV files."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    frame = load_iris(as_frame=True).frame
    train, test = train_test_split(
        frame, test_size=0.3, random_state=seed, stratify=frame["target"]
    )
    train.to_csv(train_data.path, index=False)
    test.to_csv(test_data.path, index=False)


@dsl.component(packages_to_install=["scikit-learn", "pandas", "joblib"])
def train_model(train_data: Input[Dataset], C: float, model: Output[Model]):
    """Fit a logistic regression; the model is a folder holding model.joblib, the layout
    KServe's (and Ketch's) scikit-learn runtime serves."""
    import os

    import joblib
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_csv(train_data.path)
    X, y = frame.drop(columns=["target"]).values, frame["target"].values
    os.makedirs(model.path, exist_ok=True)
    joblib.dump(LogisticRegression(C=C, max_iter=1000).fit(X, y), f"{model.path}/model.joblib")
    model.metadata["framework"] = "sklearn"


@dsl.component(packages_to_install=["scikit-learn", "pandas", "joblib"])
def evaluate(test_data: Input[Dataset], model: Input[Model], metrics: Output[Metrics]) -> float:
    """The model's accuracy on the held-out rows."""
    import joblib
    import pandas as pd

    frame = pd.read_csv(test_data.path)
    X, y = frame.drop(columns=["target"]).values, frame["target"].values
    accuracy = float((joblib.load(f"{model.path}/model.joblib").predict(X) == y).mean())
    metrics.log_metric("accuracy", accuracy)
    return accuracy


@dsl.component(packages_to_install=["model-registry"])
def register_if_better(model: Input[Model], accuracy: float, model_name: str) -> str:
    """Register ``model`` as the next version of ``model_name`` when its accuracy beats
    the latest LIVE version's (or there is none); say what was done."""
    import os

    from model_registry import ModelRegistry

    url = os.environ["KETCH_URL"]
    registry = ModelRegistry(
        url,
        author="pipeline",
        is_secure=url.startswith("https://"),
        user_token=os.environ.get("KETCH_TOKEN"),
        custom_ca=os.environ.get("KETCH_CA_FILE"),
    )
    best, count = None, 0
    if registry.get_registered_model(model_name) is not None:
        for version in registry.get_model_versions(model_name):
            count += 1
            score = (version.custom_properties or {}).get("accuracy")
            live = getattr(version.state, "value", version.state) == "LIVE"
            if live and isinstance(score, float):
                best = score if best is None else max(best, score)
    if best is not None and accuracy <= best:
        return f"kept: accuracy {accuracy:.3f} does not beat {best:.3f}"
    name = f"v{count + 1}"
    registry.register_model(
        model_name,
        model.uri,
        model_format_name="sklearn",
        model_format_version="1",
        version=name,
        version_description="trained by examples/registry_pipeline.py",
        metadata={"accuracy": accuracy},
    )
    return f"registered {model_name} {name} with accuracy {accuracy:.3f}"


@dsl.pipeline(name="train-evaluate-register")
def registry_pipeline(C: float = 1.0, seed: int = 7, model_name: str = "iris-clf") -> str:
    data = prepare_data(seed=seed)
    trained = train_model(train_data=data.outputs["train_data"], C=C)
    scored = evaluate(test_data=data.outputs["test_data"], model=trained.outputs["model"])
    return register_if_better(
        model=trained.outputs["model"], accuracy=scored.outputs["Output"], model_name=model_name
    ).output


if __name__ == "__main__":
    import ketch

    run = ketch.run(registry_pipeline)
    print(run.state, run.outputs)
