# mypy: disable-error-code="import-untyped"
"""The pipeline ``ketch demo`` runs: prepare data, tune, train, evaluate, register.

It prepares scikit-learn's bundled breast-cancer data set (no download), tunes a
random forest with a small Katib Experiment that its ``tune`` task creates through
the server's Kubernetes API (each trial a batch Job scoring one choice of
hyperparameters by cross-validation on the training rows), trains the best choice,
evaluates it on held-out rows with Metrics and ClassificationMetrics (confusion
matrix, ROC curve), and registers it with the ``model-registry`` client when its
accuracy beats the latest LIVE version's. Tasks find the server in ``KETCH_URL``
(and ``KETCH_TOKEN``, ``KETCH_CA_FILE`` when it asks for them), which Ketch puts in
every task's environment. The pipeline returns what to deploy: the model, the version
and whether this run registered it.

Components are self-contained (what each one imports is imported inside it), as the
KFP SDK ships their source to the tasks.
"""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

#: the registered model the tour trains and serves
MODEL_NAME = "breast-cancer-clf"


@dsl.component(packages_to_install=["scikit-learn", "pandas"])
def prepare_data(
    test_size: float, seed: int, train_data: Output[Dataset], test_data: Output[Dataset]
):
    """Split the breast-cancer data set into train and test CSV files."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    frame = load_breast_cancer(as_frame=True).frame
    train, test = train_test_split(
        frame, test_size=test_size, random_state=seed, stratify=frame["target"]
    )
    for artifact, part in ((train_data, train), (test_data, test)):
        part.to_csv(artifact.path, index=False)
        artifact.metadata["rows"] = len(part)
        artifact.metadata["features"] = part.shape[1] - 1


@dsl.component(packages_to_install=["httpx"])
def tune(
    train_data: Input[Dataset],
    experiment: str,
    namespace: str,
    max_trials: int,
    seed: int,
    best: Output[Metrics],
) -> dict:
    """Run a Katib Experiment over the random forest's n_estimators and max_depth
    (random search, ``max_trials`` trials, two at a time), each trial printing its
    3-fold cross-validated accuracy on the training rows; return the best trial's
    hyperparameters."""
    import logging
    import os
    import time

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not every poll in the log

    trial_program = (
        "import sys\n"
        "import pandas as pd\n"
        "from sklearn.ensemble import RandomForestClassifier\n"
        "from sklearn.model_selection import cross_val_score\n"
        "frame = pd.read_csv(sys.argv[1])\n"
        "X, y = frame.drop(columns=['target']), frame['target']\n"
        "model = RandomForestClassifier(n_estimators=int(sys.argv[2]),\n"
        "    max_depth=int(sys.argv[3]), random_state=int(sys.argv[4]))\n"
        "print(f'accuracy={cross_val_score(model, X, y, cv=3).mean():.4f}')\n"
    )
    manifest = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": experiment, "namespace": namespace},
        "spec": {
            "objective": {"type": "maximize", "objectiveMetricName": "accuracy"},
            "algorithm": {
                "algorithmName": "random",
                "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
            },
            "parallelTrialCount": 2,
            "maxTrialCount": max_trials,
            "maxFailedTrialCount": 1,
            "parameters": [
                {
                    "name": "n_estimators",
                    "parameterType": "int",
                    "feasibleSpace": {"min": "10", "max": "120"},
                },
                {
                    "name": "max_depth",
                    "parameterType": "int",
                    "feasibleSpace": {"min": "2", "max": "8"},
                },
            ],
            "trialTemplate": {
                "primaryContainerName": "training-container",
                "trialParameters": [
                    {"name": "nEstimators", "reference": "n_estimators"},
                    {"name": "maxDepth", "reference": "max_depth"},
                ],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "training-container",
                                        "image": "python:3.11",
                                        "command": [
                                            "python",
                                            "-c",
                                            trial_program,
                                            train_data.path,
                                            "${trialParameters.nEstimators}",
                                            "${trialParameters.maxDepth}",
                                            str(seed),
                                        ],
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }
    url = os.environ["KETCH_URL"]
    token = os.environ.get("KETCH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify = os.environ.get("KETCH_CA_FILE") or True
    path = f"/apis/kubeflow.org/v1beta1/namespaces/{namespace}/experiments"
    with httpx.Client(base_url=url, headers=headers, verify=verify, timeout=30) as api:
        created = api.post(path, json=manifest)
        if created.status_code != 201:
            raise RuntimeError(f"creating experiment {experiment}: {created.text}")
        print(f"experiment {experiment} created: {max_trials} trials", flush=True)
        deadline = time.monotonic() + 900
        while True:
            status = api.get(f"{path}/{experiment}").json().get("status") or {}
            held = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
            if "Succeeded" in held or "Failed" in held:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"experiment {experiment} did not finish in 15 minutes")
            time.sleep(0.5)
    optimal = status.get("currentOptimalTrial") or {}
    if "Failed" in held or not optimal.get("parameterAssignments"):
        raise RuntimeError(f"experiment {experiment} found no best trial: {status}")
    params = {p["name"]: int(p["value"]) for p in optimal["parameterAssignments"]}
    for metric in (optimal.get("observation") or {}).get("metrics") or []:
        if metric.get("name") == "accuracy":
            best.log_metric("cv_accuracy", float(metric["max"]))
    for name, value in params.items():
        best.log_metric(name, value)
    print(f"best trial {optimal.get('bestTrialName')}: {params}", flush=True)
    return params


@dsl.component(packages_to_install=["scikit-learn", "pandas", "joblib"])
def train_model(train_data: Input[Dataset], params: dict, seed: int, model: Output[Model]):
    """Fit the random forest with ``params``; the model is a folder holding
    model.joblib, the layout KServe's (and Ketch's) scikit-learn runtime serves."""
    import os

    import joblib
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    frame = pd.read_csv(train_data.path)
    X, y = frame.drop(columns=["target"]).values, frame["target"].values
    forest = RandomForestClassifier(
        n_estimators=int(params["n_estimators"]),
        max_depth=int(params["max_depth"]),
        random_state=seed,
    )
    os.makedirs(model.path, exist_ok=True)
    joblib.dump(forest.fit(X, y), os.path.join(model.path, "model.joblib"))
    model.metadata["framework"] = "sklearn"
    model.metadata.update({k: int(v) for k, v in params.items()})


@dsl.component(packages_to_install=["scikit-learn", "pandas", "joblib"])
def evaluate(
    test_data: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
) -> float:
    """Score the model on the held-out rows: accuracy, precision, recall, F1 and ROC
    AUC, the confusion matrix and the ROC curve; return the accuracy."""
    import os

    import joblib
    import pandas as pd
    from sklearn import metrics as scores

    frame = pd.read_csv(test_data.path)
    X, y = frame.drop(columns=["target"]).values, frame["target"].values
    forest = joblib.load(os.path.join(model.path, "model.joblib"))
    predicted = forest.predict(X)
    probability = forest.predict_proba(X)[:, 1]
    accuracy = float(scores.accuracy_score(y, predicted))
    metrics.log_metric("accuracy", round(accuracy, 4))
    metrics.log_metric("precision", round(float(scores.precision_score(y, predicted)), 4))
    metrics.log_metric("recall", round(float(scores.recall_score(y, predicted)), 4))
    metrics.log_metric("f1", round(float(scores.f1_score(y, predicted)), 4))
    metrics.log_metric("roc_auc", round(float(scores.roc_auc_score(y, probability)), 4))
    labels = ["malignant", "benign"]  # targets 0 and 1 of the data set
    classification.log_confusion_matrix(labels, scores.confusion_matrix(y, predicted).tolist())
    fpr, tpr, thresholds = scores.roc_curve(y, probability)
    thresholds[0] = min(thresholds[0], 1.0)  # scikit-learn puts +inf first; JSON has none
    classification.log_roc_curve(fpr.tolist(), tpr.tolist(), thresholds.tolist())
    return accuracy


@dsl.component(packages_to_install=["model-registry"])
def register(model: Input[Model], accuracy: float, model_name: str) -> dict:
    """Register ``model`` as the next version of ``model_name`` when its accuracy beats
    the latest LIVE version's (or there is none); return the version to serve, this
    run's accuracy and the version's."""
    import os

    from model_registry import ModelRegistry

    url = os.environ["KETCH_URL"]
    registry = ModelRegistry(
        url,
        author="ketch demo",
        is_secure=url.startswith("https://"),
        user_token=os.environ.get("KETCH_TOKEN"),
        custom_ca=os.environ.get("KETCH_CA_FILE"),
    )
    best, best_name, count = None, None, 0
    if registry.get_registered_model(model_name) is not None:
        for version in registry.get_model_versions(model_name):
            count += 1
            score = (version.custom_properties or {}).get("accuracy")
            live = getattr(version.state, "value", version.state) == "LIVE"
            if live and isinstance(score, float) and (best is None or score > best):
                best, best_name = score, version.name
    if best is not None and accuracy <= best:
        print(f"kept {model_name} {best_name}: accuracy {accuracy:.4f} does not beat {best:.4f}")
        return {
            "model": model_name,
            "version": best_name,
            "registered": False,
            "accuracy": accuracy,
            "version_accuracy": best,
        }
    name = f"v{count + 1}"
    registry.register_model(
        model_name,
        model.uri,
        model_format_name="sklearn",
        model_format_version="1",
        version=name,
        version_description="trained and evaluated by the ketch demo pipeline",
        metadata={
            "accuracy": accuracy,
            **{k: int(v) for k, v in model.metadata.items() if k in ("n_estimators", "max_depth")},
        },
    )
    print(f"registered {model_name} {name} with accuracy {accuracy:.4f}")
    return {
        "model": model_name,
        "version": name,
        "registered": True,
        "accuracy": accuracy,
        "version_accuracy": accuracy,
    }


@dsl.pipeline(
    name="ketch-tour",
    description="Prepare data, tune with Katib, train, evaluate, register the model.",
)
def tour_pipeline(
    experiment: str,
    namespace: str = "default",
    max_trials: int = 4,
    test_size: float = 0.25,
    seed: int = 42,
    model_name: str = MODEL_NAME,
) -> dict:
    data = prepare_data(test_size=test_size, seed=seed)
    tuned = tune(
        train_data=data.outputs["train_data"],
        experiment=experiment,
        namespace=namespace,
        max_trials=max_trials,
        seed=seed,
    )
    trained = train_model(
        train_data=data.outputs["train_data"], params=tuned.outputs["Output"], seed=seed
    )
    scored = evaluate(test_data=data.outputs["test_data"], model=trained.outputs["model"])
    return register(
        model=trained.outputs["model"],
        accuracy=scored.outputs["Output"],
        model_name=model_name,
    ).output
