"""The persistence calls of public Braket scripts, replayed against the reference and jobpersist.

Each test rebuilds what one public script does with ``braket.jobs`` persistence: its data
shapes (Tracker statistics with timedelta durations, Decimal costs, ``Counter`` measurement
counts, ``.tolist()`` parameters, PennyLane tensors with ``requires_grad``), its call order,
its formats and its resume logic. The code is written here from what the originals do
(each test names its original: repository and path); quantum devices are replaced by local
simulation or by seeded random numbers, since only the values reaching the persistence
calls matter.

Every call goes through ``Job``: it runs on both implementations, each in its own fresh job
directories (the ``twin`` fixture), and requires the same return (``canon``: types, dtypes,
``requires_grad``), the same exception type and byte-identical files after the call. At
the end each implementation loads every file the other wrote. Both codecs run (``backend``).
The PennyLane cases carry the ``pennylane`` marker: skipped only when pennylane cannot be
imported.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from braket.circuits import Circuit
from braket.devices import LocalSimulator
from braket.jobs_data import PersistedJobDataFormat
from braket.tracking import Tracker
from braket.tracking.tracking_events import _TaskCompletionEvent, _TaskCreationEvent
from support.reference import Twin

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("backend"),
    # jobpersist's warning for data_format="pickle" is tested in test_formats.py.
    pytest.mark.filterwarnings("ignore:data_format=.* is not PersistedJobDataFormat:UserWarning"),
]

SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"


class Job:
    """``braket.jobs``' persistence functions as one job's script calls them.

    Each call runs through jobpersist and the reference (``Twin.step``): same outcome, same
    files after the call. The script goes on with jobpersist's return value, or gets its
    exception (of the reference's exact type).
    """

    def __init__(self, twin: Twin, job_name: str) -> None:
        self.twin = twin
        twin.job_name = job_name

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        outcome = self.twin.step(lambda api: getattr(api, name)(*args, **kwargs))
        if outcome.ok:
            return outcome.value
        reference = self.twin.last_reference
        assert reference is not None and reference.error is not None
        assert outcome.error is not None
        assert type(outcome.error) is type(reference.error), (outcome.error, reference.error)
        raise outcome.error

    def save_job_checkpoint(self, *args: Any, **kwargs: Any) -> None:
        self._call("save_job_checkpoint", *args, **kwargs)

    def load_job_checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("load_job_checkpoint", *args, **kwargs)

    def save_job_result(self, *args: Any, **kwargs: Any) -> None:
        self._call("save_job_result", *args, **kwargs)

    def load_job_result(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("load_job_result", *args, **kwargs)


def cross_load_all(twin: Twin) -> None:
    """Each implementation loads every file the other wrote (by file name, which
    ``load_job_result`` takes for any envelope), and must read what the writer reads."""
    checkpoints, results = twin.dirs["ours"]
    names = [("AMZN_BRAKET_CHECKPOINT_DIR", p.name) for p in sorted(checkpoints.iterdir())]
    names += [("AMZN_BRAKET_JOB_RESULTS_DIR", p.name) for p in sorted(results.iterdir())]
    assert names, "the script wrote nothing"

    def load(variable: str, name: str) -> Any:
        return lambda api: api.load_job_result(Path(os.environ[variable]) / name, allow_pickle=True)

    for variable, name in names:
        twin.cross(load(variable, name))


def tracked_tasks(device: str, shots: int, durations_ms: list[float | None]) -> Tracker:
    """A ``braket.tracking.Tracker`` that has seen one completed task per duration, as it
    sees them in a job. Simulator tasks report a duration, summed into timedelta values in
    the statistics; QPU tasks report None."""
    tracker = Tracker()
    for i, duration in enumerate(durations_ms):
        arn = f"arn:aws:braket:us-west-2:000000000000:quantum-task/{i:08d}-0000-0000-0000"
        tracker.receive_event(_TaskCreationEvent(arn, shots, True, device))
        tracker.receive_event(_TaskCompletionEvent(arn, duration, "COMPLETED"))
    return tracker


# --------------------------------------------------------------------------------------------
# Scripts without PennyLane
# --------------------------------------------------------------------------------------------
def test_sdk_integ_job_test_script(twin: Twin) -> None:
    """amazon-braket/amazon-braket-sdk-python, test/integ_tests/job_test_script.py
    (``completed_job_script``), with the files its test
    test/integ_tests/test_create_quantum_job.py expects."""
    job_name = "braket-integ-test-1700000000"
    job = Job(twin, job_name)
    for _ in range(3):  # one bell circuit task per round in the original
        job.save_job_result({"converged": True, "energy": -0.2})
        job.save_job_checkpoint({"some_data": "abc"}, checkpoint_file_suffix="plain_data")
        job.save_job_checkpoint({"some_data": "abc"}, data_format=PersistedJobDataFormat.PICKLED_V4)

    header = {"name": "braket.jobs_data.persisted_job_data", "version": "1"}
    checkpoints, _ = twin.dirs["ours"]
    assert json.loads((checkpoints / f"{job_name}_plain_data.json").read_text()) == {
        "braketSchemaHeader": header,
        "dataDictionary": {"some_data": "abc"},
        "dataFormat": "plaintext",
    }
    assert json.loads((checkpoints / f"{job_name}.json").read_text()) == {
        "braketSchemaHeader": header,
        "dataDictionary": {"some_data": "gASVBwAAAAAAAACMA2FiY5Qu\n"},
        "dataFormat": "pickled_v4",
    }
    assert job.load_job_result() == {"converged": True, "energy": -0.2}
    assert job.load_job_checkpoint(checkpoint_file_suffix="plain_data") == {"some_data": "abc"}
    with pytest.raises(RuntimeError):
        job.load_job_checkpoint()
    assert job.load_job_checkpoint(allow_pickle=True) == {"some_data": "abc"}
    cross_load_all(twin)


def test_first_hybrid_job_algorithm_script(twin: Twin) -> None:
    """amazon-braket/amazon-braket-examples,
    examples/hybrid_jobs/0_Creating_your_first_Hybrid_Job/algorithm_script.py: five random
    rotations run with 100 shots, then one plaintext result with the ``Counter``
    measurement counts, numpy float angles, the tracker's statistics (timedelta) and the
    cost as a float."""
    np.random.seed(7)
    device = LocalSimulator()
    counts_list, angle_list = [], []
    for _ in range(5):
        angle = np.pi * np.random.randn()
        counts = device.run(Circuit().rx(0, angle), shots=100).result().measurement_counts
        angle_list.append(angle)
        counts_list.append(counts)
    assert type(counts_list[0]) is Counter
    tracker = tracked_tasks(SV1, 100, [3000.0, 3012.5, 2999.0, 4500.25, 3001.0])
    braket_cost = float(Decimal("0.075") * 5)

    job = Job(twin, "first-hybrid-job-1700000001")
    job.save_job_result(
        {
            "counts": counts_list,
            "angles": angle_list,
            "task summary": tracker.quantum_tasks_statistics(),
            "estimated cost": braket_cost,
        }
    )
    result = job.load_job_result()
    assert result["counts"] == [dict(c) for c in counts_list]
    assert result["angles"] == [float(a) for a in angle_list]
    assert (
        result["task summary"][SV1]["execution_duration"] == 16.51275
    )  # the durations above, in seconds
    assert result["task summary"][SV1]["tasks"] == {"COMPLETED": 5}
    cross_load_all(twin)


def test_qcbm_job_decimal_cost(twin: Twin) -> None:
    """amazon-braket/amazon-braket-examples,
    examples/hybrid_jobs/1_Quantum_machine_learning_in_Amazon_Braket_Hybrid_Jobs/qcbm/
    qcbm_job.py: ``params.tolist()`` of scipy's result, the tracker's statistics, and the
    estimated cost as the tracker's ``Decimal`` sum (not converted to float)."""
    params = np.random.default_rng(42).random(3 * 2 * 4)
    tracker = tracked_tasks(SV1, 1000, [3000.0 + 7 * i for i in range(12)])
    cost = Decimal("0") + Decimal("0.00075") * 1000 * 12 + Decimal("0.0")
    job = Job(twin, "qcbm-1700000002")
    job.save_job_result(
        {
            "params": params.tolist(),
            "task summary": tracker.quantum_tasks_statistics(),
            "estimated cost": cost,
        }
    )
    assert job.load_job_result()["estimated cost"] == 9.0
    cross_load_all(twin)


def test_pulse_spectroscopy_sweep(twin: Twin) -> None:
    """amazon-braket/amazon-braket-examples,
    examples/pulse_control/qubit_spectroscopy/qubit_spectroscopy_sweep.py: a frequency sweep
    on a QPU (no durations in the statistics), the |0> populations from the counts, and
    ``frequencies.tolist()``."""
    n_steps, n_shots = 25, 100
    center = 4.5e9
    frequencies = np.linspace(center - 75e6 / 2, center + 75e6 / 2, n_steps)
    rng = np.random.default_rng(3)
    populations = []
    for frequency in frequencies:
        # A Lorentzian dip at the qubit frequency, sampled as the device would count it.
        p_one = 0.8 / (1 + ((frequency - center) / 5e6) ** 2)
        counts = Counter(rng.choice(["0", "1"], size=n_shots, p=[1 - p_one, p_one]).tolist())
        populations.append(counts["0"] / n_shots)
    tracker = tracked_tasks(
        "arn:aws:braket:us-west-1::device/qpu/rigetti/Ankaa-2", n_shots, [None] * n_steps
    )
    braket_tasks_cost = float(Decimal("0.3") * n_steps + Decimal("0.00035") * n_shots * n_steps)

    job = Job(twin, "qubit-spectroscopy-1700000003")
    job.save_job_result(
        {
            "populations in |0>": populations,
            "frequencies": frequencies.tolist(),
            "task summary": tracker.quantum_tasks_statistics(),
            "estimated cost": braket_tasks_cost,
        }
    )
    assert job.load_job_result()["frequencies"] == frequencies.tolist()
    cross_load_all(twin)


# What @hybrid_job functions return, and the format the decorator saves them in:
# amazon-braket/amazon-braket-sdk-python, src/braket/jobs/_entry_point_template.py runs the
# decorated function and calls save_job_result(result, data_format=PersistedJobDataFormat.X)
# when it returned something: PICKLED_V4 in the original template, the decorator's
# data_format (default PLAINTEXT; "pickle" means PICKLED_V4) in later ones.
DECORATOR_RESULTS = {
    "counter_pickled": ("PICKLED_V4", Counter({"00": 48, "11": 51, "01": 1})),
    "int_keys_plaintext": (
        "PLAINTEXT",
        {"energies": {0: -1.05, 1: -1.12, 2: -1.136}, "counts": Counter({"0": 7, "1": 3})},
    ),
    "int_keys_pickled": (
        "PICKLED_V4",
        {"energies": {0: np.float64(-1.05), 1: np.float64(-1.12)}, "params": np.arange(4.0)},
    ),
    "float_plaintext": ("PLAINTEXT", 0.25),
    "numpy_plaintext": ("PLAINTEXT", {"params": np.zeros(2)}),  # TypeError on both
    "timedelta_plaintext": ("PLAINTEXT", {"took": timedelta(seconds=3, microseconds=250)}),
    "nothing": ("PLAINTEXT", None),
}


def run_hybrid_job(twin: Twin, job_name: str, entry_point: Any, data_format: str) -> Any:
    """The entry point template's steps, then ``job.result()`` on the saved results."""
    job = Job(twin, job_name)
    result = entry_point()
    if result is not None:
        try:
            job.save_job_result(result, data_format=PersistedJobDataFormat[data_format])
        except TypeError:
            return None  # the job fails (Job checked that the results file stayed as it was)
    loaded = job.load_job_result(allow_pickle=True)
    if result is None:
        assert loaded == {}
    return loaded


@pytest.mark.parametrize("case", list(DECORATOR_RESULTS))
def test_hybrid_job_decorator_results(twin: Twin, case: str) -> None:
    data_format, value = DECORATOR_RESULTS[case]
    loaded = run_hybrid_job(twin, f"decorated-{case.replace('_', '-')}", lambda: value, data_format)
    if case == "counter_pickled":
        # A Counter is a dict: saved as the results themselves, not as {"result": ...}.
        assert loaded == {"00": 48, "11": 51, "01": 1} and type(loaded) is dict
    elif case == "int_keys_plaintext":
        assert loaded["energies"] == {"0": -1.05, "1": -1.12, "2": -1.136}
    elif case == "int_keys_pickled":
        assert list(loaded["energies"]) == [0, 1]
    elif case == "numpy_plaintext":
        assert loaded is None
    if loaded:
        cross_load_all(twin)


# --------------------------------------------------------------------------------------------
# Scripts with PennyLane
# --------------------------------------------------------------------------------------------
def maxcut_cost(n_nodes: int, n_edges: int, p: int, seed: int) -> Any:
    """The QAOA Max-Cut cost of the PennyLane scripts below, on PennyLane's own simulator."""
    import networkx as nx
    import pennylane as qml

    graph = nx.gnm_random_graph(n_nodes, n_edges, seed=seed)
    cost_h, mixer_h = qml.qaoa.maxcut(graph)

    def qaoa_layer(gamma: Any, alpha: Any) -> None:
        qml.qaoa.cost_layer(gamma, cost_h)
        qml.qaoa.mixer_layer(alpha, mixer_h)

    @qml.qnode(qml.device("default.qubit", wires=n_nodes))
    def cost(params: Any) -> Any:
        for wire in range(n_nodes):
            qml.Hadamard(wires=wire)
        qml.layer(qaoa_layer, p, params[0], params[1])
        return qml.expval(cost_h)

    return cost


@pytest.mark.pennylane
def test_container_qaoa_entry_point(twin: Twin) -> None:
    """amazon-braket/amazon-braket-containers, test/resources/qaoa_entry_point.py (with
    qaoa_utils' autograd interface): a plaintext checkpoint per gradient step with the
    parameters as ``.tolist()`` and the cost as a float, then the result."""
    import pennylane as qml
    from pennylane import numpy as pnp

    p, num_iterations, stepsize = 2, 3, 0.1
    cost_function = maxcut_cost(4, 4, p, seed=1967)
    pnp.random.seed(1967)
    params = pnp.array(0.01 * pnp.random.uniform(size=[2, p]), requires_grad=True)
    optimizer = qml.GradientDescentOptimizer(stepsize=stepsize)

    job = Job(twin, "qaoa-container-test-1700000004")
    np_params = params.numpy()
    for iteration in range(num_iterations):
        params, cost_before = optimizer.step_and_cost(cost_function, params)
        cost_before = float(cost_before)
        np_params = params.numpy()
        job.save_job_checkpoint(
            checkpoint_data={
                "iteration": iteration + 1,
                "params": np_params.tolist(),
                "cost_before": cost_before,
            },
            checkpoint_file_suffix="checkpoint-1",
        )
    final_cost = float(cost_function(params))
    job.save_job_result({"params": np_params.tolist(), "cost": final_cost})
    assert job.load_job_checkpoint(checkpoint_file_suffix="checkpoint-1")["iteration"] == 3
    cross_load_all(twin)


@pytest.mark.pennylane
@pytest.mark.parametrize("checkpoint_format", [None, "pickle"])
def test_pennylane_qaoa_with_resume(twin: Twin, checkpoint_format: str | None) -> None:
    """amazon-braket/amazon-braket-examples,
    examples/hybrid_jobs/2_Using_PennyLane_with_Braket_Jobs/qaoa/qaoa_algorithm_script.py
    and its notebook Using_PennyLane_with_Braket_Hybrid_Jobs.ipynb (whose checkpoint cell
    passes data_format="pickle" since the examples' PR #888): a first job checkpoints every
    step and saves the result with the tracker's statistics and Decimal cost; a second job,
    given the first one's ARN as ``copy_checkpoints_from_job``, loads its checkpoint by job
    name and trains two more steps."""
    import pennylane as qml
    from pennylane import numpy as pnp

    p, seed, stepsize = 2, 1967, 0.1
    cost_function = maxcut_cost(5, 6, p, seed)
    extra = {} if checkpoint_format is None else {"data_format": checkpoint_format}

    def run(job_name: str, num_iterations: int, copy_checkpoints_from_job: str | None) -> Any:
        job = Job(twin, job_name)
        tracker = Tracker()
        if copy_checkpoints_from_job:
            checkpoint_1 = job.load_job_checkpoint(
                copy_checkpoints_from_job, checkpoint_file_suffix="checkpoint-1"
            )
            start_iteration = checkpoint_1["iteration"]
            params = pnp.array(np.array(checkpoint_1["params"]), requires_grad=True)
        else:
            start_iteration = 0
            pnp.random.seed(seed)
            params = pnp.array(0.01 * pnp.random.uniform(size=[2, p]), requires_grad=True)
        optimizer = qml.GradientDescentOptimizer(stepsize=stepsize)
        np_params = params.numpy()
        for iteration in range(start_iteration, num_iterations):
            params, cost_before = optimizer.step_and_cost(cost_function, params)
            cost_before = float(cost_before)
            np_params = params.numpy()
            for i in range(3):  # the shots the device ran for this step
                arn = f"arn:aws:braket:us-west-2:000000000000:quantum-task/{iteration}-{i}"
                tracker.receive_event(_TaskCreationEvent(arn, 1000, True, SV1))
                tracker.receive_event(_TaskCompletionEvent(arn, 34.0 + i, "COMPLETED"))
            job.save_job_checkpoint(
                checkpoint_data={
                    "iteration": iteration + 1,
                    "params": np_params.tolist(),
                    "cost_before": cost_before,
                },
                checkpoint_file_suffix="checkpoint-1",
                **extra,
            )
        final_cost = float(cost_function(params))
        job.save_job_result(
            {
                "params": np_params.tolist(),
                "cost": final_cost,
                "task summary": tracker.quantum_tasks_statistics(),
                "estimated cost": Decimal("0") + Decimal("0.00075") * 1000 * 3 * num_iterations,
            }
        )
        return job.load_job_result()

    first = run("qaoa-job-autograd-1700000005", 3, None)
    arn = "arn:aws:braket:us-west-2:000000000000:job/qaoa-job-autograd-1700000005"
    continued = run("qaoa-job-continued-autograd-1700000006", 5, arn.split("/", 2)[-1])
    assert first["task summary"][SV1]["tasks"] == {"COMPLETED": 9}
    assert continued["task summary"][SV1]["tasks"] == {"COMPLETED": 6}
    checkpoints, _ = twin.dirs["ours"]
    labels = {
        path.name: json.loads(path.read_text())["dataFormat"] for path in checkpoints.iterdir()
    }
    expected_label = checkpoint_format or "plaintext"
    assert labels == {
        "qaoa-job-autograd-1700000005_checkpoint-1.json": expected_label,
        "qaoa-job-continued-autograd-1700000006_checkpoint-1.json": expected_label,
    }
    cross_load_all(twin)


@pytest.mark.pennylane
def test_qnspsa_benchmark(twin: Twin) -> None:
    """amazon-braket/amazon-braket-examples,
    examples/hybrid_jobs/6_QNSPSA_optimizer_with_embedded_simulator/source_scripts/
    benchmark_qaoa_converge_speed.py (and qaoa_large_problem.py) with utils.train: loss
    traces of several optimizers (lists, and lists of lists for the repeated stochastic
    ones) and their durations, saved in one plaintext result."""
    import pennylane as qml
    from pennylane import numpy as pnp

    depth, max_iter, spsa_repeats = 1, 3, 2
    cost = maxcut_cost(3, 3, depth, seed=7)
    pnp.random.seed(7)
    params_init = 2 * pnp.pi * (pnp.random.rand(2, depth) - 0.5)

    def train(opt: Any) -> list[float]:
        params, loss_recording = params_init, []
        for _ in range(max_iter):
            params, loss = opt.step_and_cost(cost, params)
            loss_recording.append(loss.item())  # np.asscalar in the original
        return loss_recording

    results: dict[str, Any] = {}
    start_time = time.time()
    results["gd_loss_per_iter"] = train(qml.GradientDescentOptimizer(stepsize=1e-2))
    results["gd_duration"] = time.time() - start_time
    start_time = time.time()
    results["qng_loss_per_iter"] = train(qml.QNGOptimizer(stepsize=5e-2))
    results["qng_duration"] = time.time() - start_time
    start_time = time.time()
    results["qnspsa_loss_per_iter"] = [
        train(qml.QNSPSAOptimizer(stepsize=0.1, finite_diff_step=1e-2, resamplings=1, seed=j))
        for j in range(spsa_repeats)
    ]
    results["qnspsa_duration"] = time.time() - start_time

    job = Job(twin, "qnspsa-benchmark-1700000007")
    job.save_job_result(results)
    loaded = job.load_job_result()
    assert len(loaded["qnspsa_loss_per_iter"]) == spsa_repeats
    assert all(type(x) is float for x in loaded["gd_loss_per_iter"])
    cross_load_all(twin)


def variational_classifier_cost(num_layers: int) -> tuple[Any, Any]:
    """The variational classifier of the experiment-tracking sample (two qubits, amplitude
    angles in, one Z expectation out) and its square loss."""
    import pennylane as qml

    def statepreparation(a: Any) -> None:
        qml.RY(a[0], wires=0)
        qml.CNOT(wires=[0, 1])
        qml.RY(a[1], wires=1)
        qml.CNOT(wires=[0, 1])
        qml.RY(a[2], wires=1)
        qml.PauliX(wires=0)
        qml.CNOT(wires=[0, 1])
        qml.RY(a[3], wires=1)
        qml.CNOT(wires=[0, 1])
        qml.RY(a[4], wires=1)
        qml.PauliX(wires=0)

    @qml.qnode(qml.device("default.qubit", wires=2))
    def circuit(weights: Any, angles: Any) -> Any:
        statepreparation(angles)
        for w in weights:
            qml.Rot(w[0, 0], w[0, 1], w[0, 2], wires=0)
            qml.Rot(w[1, 0], w[1, 1], w[1, 2], wires=1)
            qml.CNOT(wires=[0, 1])
        return qml.expval(qml.PauliZ(0))

    def classify(weights: Any, bias: Any, angles: Any) -> Any:
        return circuit(weights, angles) + bias

    def cost(weights: Any, bias: Any, features: Any, labels: Any) -> Any:
        predictions = [classify(weights, bias, f) for f in features]
        return sum((label - p) ** 2 for label, p in zip(labels, predictions, strict=True)) / len(
            labels
        )

    return classify, cost


@pytest.mark.pennylane
def test_experiment_tracking_var_classifier(twin: Twin) -> None:
    """aws-samples/amazon-braket-experiment-tracking-with-sagemaker,
    var_classifier/entrypoint.py: a Nesterov-momentum training that checkpoints
    ``weights.numpy().tolist()``, ``bias.numpy()`` and ``cost_train.numpy()`` every step;
    a second job resumes from the first one's checkpoint by name and rebuilds the tensors
    with ``requires_grad=True``. Before that, a job pointed at a job that never wrote a
    checkpoint (it failed first) gets FileNotFoundError on both, as does a job's own
    ``load_job_checkpoint()`` before its first save."""
    from pennylane import numpy as pnp
    from pennylane.optimize import NesterovMomentumOptimizer

    num_layers, batchsize, stepsize = 2, 4, 0.05
    classify, cost = variational_classifier_cost(num_layers)
    rng = np.random.default_rng(0)
    feats_train, feats_val = rng.uniform(-1, 1, (8, 5)), rng.uniform(-1, 1, (4, 5))
    y_train, y_val = np.sign(feats_train[:, 0]), np.sign(feats_val[:, 0])

    def accuracy(labels: Any, predictions: Any) -> float:
        # utils.accuracy: a count of hits (an int) over the number of labels, a float.
        hits = 0
        for label, prediction in zip(labels, predictions, strict=True):
            if abs(label - prediction) < 1e-5:
                hits += 1
        return hits / len(labels)

    def run(job_name: str, num_iterations: int, copy_checkpoints_from_job: str | None) -> Any:
        job = Job(twin, job_name)
        pnp.random.seed(0)
        opt = NesterovMomentumOptimizer(stepsize=stepsize)
        if copy_checkpoints_from_job:
            checkpoint_1 = job.load_job_checkpoint(
                copy_checkpoints_from_job, checkpoint_file_suffix="checkpoint-1"
            )
            start_iteration = checkpoint_1["iteration"]
            weights = pnp.array(checkpoint_1["weights"], requires_grad=True)
            bias = pnp.array(checkpoint_1["bias"], requires_grad=True)
        else:
            start_iteration = 0
            weights = 0.01 * pnp.random.randn(num_layers, 2, 3, requires_grad=True)
            bias = pnp.array(0.0, requires_grad=True)
        for it in range(start_iteration, num_iterations):
            batch_index = pnp.random.randint(0, len(feats_train), (batchsize,))
            weights, bias, _, _ = opt.step(
                cost, weights, bias, feats_train[batch_index], y_train[batch_index]
            )
            acc_train = accuracy(
                y_train, [pnp.sign(classify(weights, bias, f)) for f in feats_train]
            )
            acc_val = accuracy(y_val, [pnp.sign(classify(weights, bias, f)) for f in feats_val])
            cost_train = cost(weights, bias, feats_train, y_train)
            cost_val = cost(weights, bias, feats_val, y_val)
            job.save_job_checkpoint(
                checkpoint_data={
                    "iteration": it,
                    "weights": weights.numpy().tolist(),
                    "bias": bias.numpy(),
                    "cost_train": cost_train.numpy(),
                },
                checkpoint_file_suffix="checkpoint-1",
            )
        job.save_job_result(
            {
                "weights": weights.numpy().tolist(),
                "bias": bias.numpy(),
                "final_cost_train": cost_train.numpy(),
                "final_cost_val": cost_val.numpy(),
                "final_acc_train": acc_train,
                "final_acc_val": acc_val,
            }
        )
        return job.load_job_result()

    orphan = Job(twin, "var-classifier-orphan-1700000008")
    with pytest.raises(FileNotFoundError):
        orphan.load_job_checkpoint("var-classifier-failed-1700000007", "checkpoint-1")
    with pytest.raises(FileNotFoundError):
        orphan.load_job_checkpoint()
    first = run("var-classifier-1700000009", 3, None)
    # The original stores the index of the step just done: the resumed job redoes it.
    continued = run("var-classifier-continued-1700000010", 4, "var-classifier-1700000009")
    assert type(first["bias"]) is float and type(continued["final_cost_val"]) is float
    cross_load_all(twin)


@pytest.mark.pennylane
@pytest.mark.parametrize("data_format", ["PICKLED_V4", "PLAINTEXT"])
def test_hybrid_job_decorator_pennylane(twin: Twin, data_format: str) -> None:
    """A ``@hybrid_job`` function that trains with PennyLane and returns its tensors
    (amazon-braket/amazon-braket-sdk-python, src/braket/jobs/_entry_point_template.py for
    the save), checkpointing them pickled as it goes: the tensors come back from both
    implementations with their dtype and ``requires_grad``. The function saves a plaintext
    result of its own first, which the template's pickled save merges over. Saved as
    plaintext, the tensors are a TypeError on both, and only the function's own result stays."""
    import pennylane as qml
    from pennylane import numpy as pnp

    @qml.qnode(qml.device("default.qubit", wires=2))
    def circuit(params: Any) -> Any:
        qml.RX(params[0], wires=0)
        qml.RY(params[1], wires=1)
        qml.CNOT(wires=[0, 1])
        return qml.expval(qml.PauliZ(1))

    job = Job(twin, f"decorated-pennylane-{data_format.lower()}")

    def entry_point() -> dict[str, Any]:
        params = pnp.array([0.1, 0.2], requires_grad=True)
        frozen = pnp.array([1, 2, 3], requires_grad=False)
        opt = qml.GradientDescentOptimizer(stepsize=0.2)
        losses = []
        for step in range(4):
            params, loss = opt.step_and_cost(circuit, params)
            losses.append(loss)
            job.save_job_checkpoint(
                {"step": step, "params": params, "losses": losses, "frozen": frozen},
                data_format=PersistedJobDataFormat.PICKLED_V4,
            )
        resumed = job.load_job_checkpoint(allow_pickle=True)
        assert type(resumed["params"]) is pnp.tensor and resumed["params"].requires_grad
        assert resumed["frozen"].requires_grad is False
        # Results saved by the function itself: the template's save merges over them.
        job.save_job_result({"steps": len(losses), "last loss": float(losses[-1])})
        return {"params": params, "losses": losses, "final": circuit(params)}

    loaded = run_hybrid_job(twin, job.twin.job_name, entry_point, data_format)
    if data_format == "PLAINTEXT":
        assert loaded is None
        assert set(job.load_job_result()) == {"steps", "last loss"}
        return
    assert loaded["steps"] == 4  # merged, and pickled with the rest
    assert type(loaded["params"]) is pnp.tensor and loaded["params"].requires_grad
    assert loaded["params"].dtype == np.float64 and len(loaded["losses"]) == 4
    cross_load_all(twin)
