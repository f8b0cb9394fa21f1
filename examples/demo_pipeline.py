"""Train and evaluate a scikit-learn classifier: the main Ketch demo.

Prepares scikit-learn's bundled breast-cancer data set (no download), trains a
random forest, and evaluates it, logging Metrics (accuracy, precision, recall, F1,
ROC AUC) and ClassificationMetrics (confusion matrix and ROC curve)::

    ketch run examples/demo_pipeline.py --param n_estimators=100
    python examples/demo_pipeline.py          # the same through ketch.run()
"""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output


@dsl.component(packages_to_install=["scikit-learn", "pandas"])
def prepare_data(
    test_size: float,
    seed: int,
    train_data: Output[Dataset],
    test_data: Output[Dataset],
):
    """Split the breast-cancer data set into train and test CSV files."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame["target"]
    )
    train.to_csv(train_data.path, index=False)
    test.to_csv(test_data.path, index=False)
    for artifact, part in ((train_data, train), (test_data, test)):
        artifact.metadata["rows"] = len(part)
        artifact.metadata["features"] = part.shape[1] - 1


@dsl.component(packages_to_install=["scikit-learn", "pandas", "joblib"])
def train_model(
    train_data: Input[Dataset],
    n_estimators: int,
    max_depth: int,
    seed: int,
    model: Output[Model],
):
    """Fit a random forest (scaled features) and save it with joblib."""
    import joblib
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = pd.read_csv(train_data.path)
    features, target = train.drop(columns=["target"]), train["target"]
    classifier = make_pipeline(
        StandardScaler(),
        RandomForestClassifier(
            n_estimators=n_estimators, max_depth=max_depth or None, random_state=seed
        ),
    )
    classifier.fit(features, target)
    joblib.dump(classifier, model.path)
    model.framework = "scikit-learn"
    model.metadata["n_estimators"] = n_estimators
    model.metadata["train_rows"] = len(train)


@dsl.component(packages_to_install=["scikit-learn", "pandas", "joblib"])
def evaluate_model(
    test_data: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
) -> float:
    """Score the model on the held-out data; returns the accuracy."""
    import joblib
    import pandas as pd
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
        roc_curve,
    )

    test = pd.read_csv(test_data.path)
    features, target = test.drop(columns=["target"]), test["target"]
    classifier = joblib.load(model.path)
    predicted = classifier.predict(features)
    scores = classifier.predict_proba(features)[:, 1]

    accuracy = float(accuracy_score(target, predicted))
    metrics.log_metric("accuracy", round(accuracy, 4))
    metrics.log_metric("precision", round(float(precision_score(target, predicted)), 4))
    metrics.log_metric("recall", round(float(recall_score(target, predicted)), 4))
    metrics.log_metric("f1", round(float(f1_score(target, predicted)), 4))
    metrics.log_metric("roc_auc", round(float(roc_auc_score(target, scores)), 4))

    labels = ["malignant", "benign"]  # target 0 and 1 in the data set
    classification.log_confusion_matrix(labels, confusion_matrix(target, predicted).tolist())
    fpr, tpr, thresholds = roc_curve(target, scores)
    thresholds[0] = min(thresholds[0], 1.0)  # sklearn puts +inf first; JSON has no inf
    classification.log_roc_curve(fpr.tolist(), tpr.tolist(), thresholds.tolist())
    return accuracy


@dsl.pipeline(
    name="breast-cancer-classifier",
    description="Prepare data, train a random forest, evaluate it with metrics.",
)
def demo_pipeline(
    n_estimators: int = 100,
    max_depth: int = 0,
    test_size: float = 0.25,
    seed: int = 42,
) -> float:
    data = prepare_data(test_size=test_size, seed=seed)
    trained = train_model(
        train_data=data.outputs["train_data"],
        n_estimators=n_estimators,
        max_depth=max_depth,
        seed=seed,
    )
    evaluation = evaluate_model(test_data=data.outputs["test_data"], model=trained.outputs["model"])
    return evaluation.outputs["Output"]


if __name__ == "__main__":
    import ketch

    run = ketch.run(demo_pipeline, arguments={"n_estimators": 50})
    print(f"run {run.id}: {run.state}")
    if run.state != "SUCCEEDED":
        raise SystemExit(run.error)
    metrics = run.tasks["evaluate-model"].outputs["metrics"][0]["metadata"]
    for name, value in metrics.items():
        print(f"  {name:<10} {value}")
