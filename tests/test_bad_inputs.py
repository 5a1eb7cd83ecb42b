"""The bad-input battery: every user mistake gets one clear line naming the problem and the fix,
no traceback, and nothing under runs/ is created or changed. Through the CLI (`dapt run`), and
through the library for the files a study does not read at check time (checkpoints, datasets)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dapt.cli import main
from dapt.core.errors import DaptError

REPO = Path(__file__).resolve().parents[1]

TEACHER = "{stage: teacher, name: t, model: resnet18, init: fr, dataset: digits"
DISTILL = "{stage: distill, name: s, student: mobilenet_v2, dataset: digits"
GENERATE = "{stage: generate, name: g, dataset: digits"
# a study whose teacher and generate run work on fashion_mnist, for a run of digits to name
MIXED = ("study: x\nruns:\n  - " + TEACHER.replace("digits", "fashion_mnist") + "}\n  - "
         + GENERATE.replace("digits", "fashion_mnist") + "}\n")

# "a billion laughs" as the value of a key indented by four: ten aliases of ten aliases, nine deep
LAUGHS = "".join(f"    - &{n} [{', '.join([f'*{p}' if p else 'x'] * 10)}]\n"
                 for p, n in zip(["", *"abcdefgh"], "abcdefghi"))

# (case, params file text, what the one error line must say)
CASES = [
    ("misspelled key", TEACHER + ", epoch: 3}", "unknown key 'epoch' (did you mean 'epochs'?)"),
    ("wrong type", TEACHER + ", epochs: three}", "epochs must be an integer, got 'three'"),
    ("outside its choices", "{stage: teacher, name: t, init: scratch}", "init: 'scratch' is not one of: fr, lp, ft"),
    ("zero epochs", TEACHER + ", epochs: 0}", "epochs=0 must be >= 1"),
    ("negative batch size", TEACHER + ", batch_size: -8}", "batch_size=-8 must be >= 1"),
    ("zero image size", TEACHER + ", image_size: 0}", "image_size=0 must be >= 1"),
    ("zero learning rate", TEACHER + ", lr: 0}", "lr=0.0 must be > 0"),
    ("negative learning rate as text", TEACHER + ", lr: -1e-3}", "lr=-0.001 must be > 0"),
    ("unknown stage", "{stage: pretrain, name: t}", "unknown stage 'pretrain'; choose one of: teacher, distill"),
    ("unknown model", TEACHER.replace("resnet18", "resnet9") + "}", "model: 'resnet9' is not one of: resnet18"),
    ("unknown dataset", TEACHER.replace("digits", "mnist") + "}", "dataset: 'mnist' is not one of: fashion_mnist"),
    ("unknown distiller", DISTILL + ", distiller: fitnet}", "distiller: 'fitnet' is not one of: none, kd"),
    ("unknown projector", DISTILL + ", distiller: none, projector: mlp9}", "projector: 'mlp9' is not one of"),
    ("reference to no run", DISTILL + ", teacher: ghost}", "teacher 'ghost' is neither a run of this study"),
    ("reference to the wrong stage", "study: x\nruns:\n  - " + DISTILL + ", distiller: none}\n  - "
     + DISTILL.replace("name: s", "name: s2") + ", teacher: s}", "teacher 's' is a distill run, not a teacher run"),
    ("duplicate run names", "study: x\nruns: [{stage: teacher, name: a}, {stage: teacher, name: a}]",
     "two runs are named 'a'; run names must be unique"),
    ("run name with a slash", "{stage: teacher, name: a/b}", "invalid run name 'a/b'"),
    ("run name ..", "{stage: teacher, name: '..'}", "invalid run name '..'"),
    ("run name as an absolute path", "{stage: teacher, name: /tmp/x}", "invalid run name '/tmp/x'"),
    ("run name with a NUL byte", '{stage: teacher, name: "a\\0b"}', "invalid run name 'a\\x00b'"),
    ("run name with a leading dot", "{stage: teacher, name: .hidden}", "invalid run name '.hidden'"),
    ("study name escaping runs/", "study: ../up\nruns: [{stage: teacher, name: a}]", "invalid study name '../up'"),
    ("empty file", "", "expected a mapping"),
    ("not a mapping", "- just\n- a list\n", "expected a mapping"),
    ("malformed YAML", TEACHER + ", lr: [1, 2", "not valid YAML at line"),
    ("YAML tag building an object", "!!python/object/apply:os.system ['touch pwned']", "YAML tag not allowed"),
    ("teacher run that failed", DISTILL + ", teacher: runs/other/failed}", "'runs/other/failed' is 'failed', not done"),
    ("teacher run still running", DISTILL + ", teacher: runs/other/running}",
     "'runs/other/running' is 'running', not done"),
    ("teacher outside runs/", DISTILL + ", teacher: elsewhere}", "teacher 'elsewhere' is outside runs/; name a run"),
    ("teacher reached through ..", DISTILL + ", teacher: runs/../elsewhere}", "'runs/../elsewhere' is outside runs/"),
    ("teacher through a symlink out of runs/", DISTILL + ", teacher: runs/other/link}",
     "'runs/other/link' is outside runs/"),
    ("teacher of other classes", DISTILL + ", teacher: runs/other/fashion}",
     "was trained on fashion_mnist, this run uses digits"),
    ("image size a model cannot take", "{stage: teacher, name: t, model: vit_b_16, image_size: 30}",
     "vit_b_16 needs an image_size divisible by 16 (its patch size), got 30; use 16 or 32"),
    ("grid over an unknown key", "study: x\nruns: [{stage: teacher, name: '{epoch}', grid: {epoch: [1, 2]}}]",
     "unknown key 'epoch'"),
    ("distiller without a teacher", DISTILL + ", distiller: kd}", "distiller 'kd' needs a teacher"),
    ("run_dir set by hand", TEACHER + ", run_dir: /etc}", "run_dir is set by `dapt run`"),
    ("dataset missing from disk", TEACHER.replace("digits", "cifar10") + "}",
     "/data/cifar-10-batches-py; set download: true in the params"),
    ("folder dataset missing from disk", TEACHER.replace("digits", "dtd") + "}",
     "/data/dtd/dtd/labels/train1.txt not found; put the official DTD release (images/, labels/) in"),
    ("distiller knob out of range", DISTILL + ", distiller: none, crd_momentum: 1.0}", "crd_momentum=1.0 must be in [0, 1)"),
    ("synset_size without synthetic", DISTILL + ", distiller: none, synset_size: 2x}",
     "synset_size 2x needs synthetic images: set synthetic to a generate run"),
    ("synset_size outside its choices", DISTILL + ", distiller: none, synset_size: 3x}", "synset_size: '3x' is not one of: 1x, 2x, 5x, 10x"),
    ("synthetic naming a teacher run", DISTILL + ", distiller: none, synthetic: runs/other/fashion}",
     "synthetic 'runs/other/fashion' is a teacher run, not a generate run"),
    ("synthetic images of another dataset", DISTILL + ", distiller: none, synthetic: runs/other/generated_fashion}",
     "synthetic 'runs/other/generated_fashion' was trained on fashion_mnist, this run uses digits"),
    ("teacher of this study on another dataset", MIXED + "  - " + DISTILL + ", teacher: t, distiller: kd}",
     "params/bad.yaml: run 's' uses digits, but its teacher 't' is trained on fashion_mnist; set the same dataset"),
    ("synthetic set of this study of another dataset", MIXED + "  - " + DISTILL + ", synthetic: g, distiller: none}",
     "run 's' uses digits, but its synthetic 'g' generated its images from fashion_mnist"),
    ("generate judged by a teacher of another dataset", MIXED + "  - " + GENERATE.replace("name: g", "name: g2")
     + ", teacher: t}", "run 'g2' uses digits, but its teacher 't' is trained on fashion_mnist"),
    ("description that is no text", "study: x\ndescription: {rule: a}\nruns: [" + TEACHER + "}]",
     "description must be text"),
    ("decision that is no mapping", "study: x\ndecision: pre-training\nruns: [" + TEACHER + "}]",
     "params/bad.yaml: decision must be a mapping of claim and within_pt, e.g. decision: {claim: pre-training, "
     "within_pt: 1.0}; got a str"),
    ("decision with an unknown key", "study: x\ndecision: {claim: pre-training, within: 1}\nruns: [" + TEACHER + "}]",
     "params/bad.yaml: decision: unknown key 'within'; valid keys: claim, within_pt"),
    ("decision without its margin", "study: x\ndecision: {claim: pre-training}\nruns: [" + TEACHER + "}]",
     "decision: within_pt is missing; e.g. decision: {claim: pre-training, within_pt: 1.0}"),
    ("decision on no claim", "study: x\ndecision: {claim: pretraining, within_pt: 1}\nruns: [" + TEACHER + "}]",
     "decision: claim 'pretraining' is not one of: pre-training, ideal images"),
    ("decision on a claim of a gain", "study: x\ndecision: {claim: no teacher, within_pt: 1}\nruns: [" + TEACHER
     + "}]", "decision: claim 'no teacher' is a gain of A over B, which a rule of reaching B to within within_pt "
             "does not decide; choose one of: pre-training, ideal images"),
    ("decision margin that is no number", "study: x\ndecision: {claim: pre-training, within_pt: one}\nruns: ["
     + TEACHER + "}]", "decision: within_pt must be a number of points >= 0 (how far below B the best A may score "
                       "with the claim still holding), got 'one'"),
    ("decision margin below zero", "study: x\ndecision: {claim: pre-training, within_pt: -1}\nruns: [" + TEACHER
     + "}]", "decision: within_pt must be a number of points >= 0"),
    ("study_decision set by hand", "study: x\nruns: [{stage: report, name: r, study_decision: {claim: pre-training, "
     "within_pt: 1}}]", "run 'r': study_decision is set by `dapt run`, not by a params file; remove it"),
    ("no images asked for", GENERATE + ", images_per_class: 0}", "images_per_class=0 must be >= 1"),
    ("unknown generator", GENERATE + ", generator: gan}", "generator: 'gan' is not one of: ddpm, stable_diffusion"),
    ("prompt template with another field", GENERATE + ", prompt_template: 'a {label}'}",
     "prompt_template 'a {label}' may only use {name}"),
    ("ddpm image size the UNet cannot halve", GENERATE + ", image_size: 30}",
     "needs an image_size divisible by 8, got 30; use 24"),
    ("label dropout of 1", GENERATE + ", ddpm_label_drop: 1.0}", "ddpm_label_drop=1.0 must be in [0, 1)"),
    ("generate judged by a distill run", "study: x\nruns:\n  - " + DISTILL + ", distiller: none}\n  - "
     + GENERATE + ", teacher: s}", "teacher 's' is a distill run, not a teacher run"),
    ("stable_diffusion model folder that is no pipeline", GENERATE + ", generator: stable_diffusion, model: params}",
     "model 'params' is a folder without model_index.json"),
    ("device of no known form", TEACHER + ", device: gpu}", "device: 'gpu' is not one of: auto, cpu, cuda, cuda:N"),
    ("device not on this machine", TEACHER + ", device: 'cuda:7'}",
     "device: 'cuda:7' is not present on this machine (it has: cpu"),
    ("amp outside its choices", TEACHER + ", amp: fp8}", "amp: 'fp8' is not one of: off, bf16, fp16"),
    ("fp16 on the CPU", TEACHER + ", device: cpu, amp: fp16}", "amp: fp16 on the CPU (device: cpu) has no native"),
    ("generate on a device not here", GENERATE + ", device: 'cuda:7'}", "device: 'cuda:7' is not present"),
    ("stable_diffusion model that is no hub id", GENERATE + ", generator: stable_diffusion, model: 'no such/x y'}",
     "is neither a local folder nor a Hugging Face hub id"),
    ("a key given twice", TEACHER + ", epochs: 1, epochs: 5}", "line 1: key 'epochs' is given twice; keep one"),
    ("a NUL byte", TEACHER + ", seed: \0}", "not valid YAML: unacceptable character #x0000"),
    ("a grid of billions of runs", "study: x\nruns: [{stage: teacher, name: '{seed}_{lr}_{epochs}_{batch_size}', grid: "
     "{seed: %s, lr: %s, epochs: %s, batch_size: %s}}]" % ((list(range(1, 300)),) * 4),
     "grid makes 7,992,538,801 runs (299 x 299 x 299 x 299), more than a study holds (10,000)"),
    ("a value of half a million items by YAML aliases, printed cut", TEACHER + ", pretrained_weights: "
     "[&a [x, x, x, x, x, x, x, x, x], " + ", ".join(f"&{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcde", "bcdef"))
     + "]}",
     "pretrained_weights must be a string or null, got [['x', 'x'"),
    ("a billion values by YAML aliases in defaults", "study: x\ndefaults:\n  pretrained_weights:\n" + LAUGHS
     + "runs: [" + TEACHER + "}]", "params/bad.yaml at line 9: YAML aliases expand this value to 1,111,111 values, "
     "more than a params file holds written out (1,048,576); nest fewer aliases"),
    ("a value holding itself by a YAML alias", TEACHER + ", pretrained_weights: &a [x, *a]}",
     "line 1: this value holds itself through a YAML alias (an alias inside its own anchor)"),
    ("values nested a thousand deep", TEACHER + ", pretrained_weights: " + "[" * 1000 + "]" * 1000 + "}",
     "values nested too deep to read (lists or mappings hundreds of levels inside each other)"),
    ("Python's None for null", TEACHER + ", subset_seed: None}",
     "subset_seed: 'None' is the string None; YAML spells the empty value null"),
    ("Python's None for a choice or null", DISTILL + ", distiller: none, synset_size: NONE}",
     "synset_size: 'NONE' is the string NONE; YAML spells the empty value null"),
    ("Python's None for no teacher", DISTILL + ", distiller: none, teacher: None}",
     "teacher: 'None' is the string None; YAML spells the empty value null"),
    ("a quoted False", TEACHER + ", download: 'False'}", "download: 'False' is the string False; YAML spells the "
     "boolean false"),
    ("a teacher given as a list", DISTILL + ", distiller: none, teacher: [t]}", "teacher must be a string or null, "
     "got ['t']"),
    ("unknown key like none of a stage's", TEACHER + ", zzz: 3}",
     "run 't': unknown key 'zzz': a teacher run has no such key; `dapt params teacher` lists its keys"),
    ("unknown key like none of any stage's", "study: x\ndefaults: {zzz: 3}\nruns: [" + TEACHER + "}]",
     "defaults: unknown key 'zzz': no stage takes it from a params file; `dapt params` lists each stage's keys"),
    ("a run name too long for a folder", "{stage: teacher, name: " + "a" * 300 + "}",
     "(300 characters): a folder name holds at most 200"),
    ("an image size no machine holds", DISTILL + ", distiller: none, image_size: 200000}",
     "run 's': holds 277 TB of uint8 images at image_size 200000 (1,437 training + 360 test images)"),
    ("teacher whose record holds no params", DISTILL + ", teacher: runs/other/edited}",
     "its metrics.json holds no params mapping"),
]


def finished_run(folder: Path, stage: str, status: str, dataset: str) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": status, "stage": stage, "params": {"dataset": dataset}}))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else b"<dir>" for p in root.rglob("*")}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder whose runs/ holds other studies' runs in every state."""
    (tmp_path / "params").mkdir()
    finished_run(tmp_path / "runs/other/failed", "teacher", "failed", "digits")
    finished_run(tmp_path / "runs/other/running", "teacher", "running", "digits")
    finished_run(tmp_path / "runs/other/fashion", "teacher", "done", "fashion_mnist")
    finished_run(tmp_path / "runs/other/generated_fashion", "generate", "done", "fashion_mnist")
    finished_run(tmp_path / "elsewhere", "teacher", "done", "digits")  # finished, but not under runs/
    (tmp_path / "runs/other/link").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "runs/other/edited").mkdir()
    (tmp_path / "runs/other/edited/metrics.json").write_text('{"status": "done", "stage": "teacher", "params": [1]}')
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(project: Path, capsys, args: list[str]) -> str:
    """Run the CLI, check it refused in one line without touching runs/, return that line."""
    before = snapshot(project / "runs")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dapt: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert snapshot(project / "runs") == before, "a refused study changed runs/"
    return err


@pytest.mark.parametrize("case, text, fragment", CASES, ids=[case for case, _, _ in CASES])
def test_bad_params_file_gets_one_line_and_writes_nothing(project, capsys, case, text, fragment):
    (project / "params" / "bad.yaml").write_text(text + "\n", encoding="utf-8")
    err = refused(project, capsys, ["run", "params/bad.yaml"])
    assert fragment in err
    assert not (project / "pwned").exists()


def test_a_student_of_a_teacher_of_this_study_on_another_dataset_is_refused_by_a_dry_run(project, capsys):
    """Until references inside a study were checked, the student's notebook failed only after
    its teacher had trained; now the study's validation refuses it, so a dry run catches it too."""
    (project / "params" / "mixed.yaml").write_text(textwrap.dedent("""
        study: mixed
        defaults: {train_subset: 300, image_size: 16, epochs: 1}
        runs:
          - {stage: teacher, name: lite2_ft, model: resnet18, init: fr, dataset: fashion_mnist}
          - {stage: distill, name: kd, student: mobilenet_v2, teacher: lite2_ft, distiller: kd, dataset: digits}
          - {stage: report, name: report}
    """))
    err = refused(project, capsys, ["run", "params/mixed.yaml", "--dry-run"])
    assert err == ("dapt: error: params/mixed.yaml: run 'kd' uses digits, but its teacher 'lite2_ft' is trained on "
                   "fashion_mnist; set the same dataset on both runs, or name a teacher run of digits\n")
    assert capsys.readouterr().out == "" and not (project / "runs/mixed").exists()


def test_stable_diffusion_offline_without_weights_names_the_fix(project, capsys, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty_hf_cache")))
    (project / "params" / "sd.yaml").write_text(GENERATE + ", generator: stable_diffusion}\n")
    err = refused(project, capsys, ["run", "params/sd.yaml"])
    assert "'CompVis/stable-diffusion-v1-4' is not in the local Hugging Face cache and the hub cannot be reached" in err
    assert "huggingface-cli download CompVis/stable-diffusion-v1-4" in err and "generator ddpm" in err
    assert not (project / "runs" / "sd").exists()


# (case, params file bytes, what the one error line must say)
BYTE_CASES = [
    ("latin-1", (TEACHER + ", description: caf\xe9}\n").encode("latin-1"),
     "not UTF-8 text (byte 0xe9 at line 1); save the file as UTF-8"),
    ("UTF-16", ("# my study\n" + TEACHER + "}\n").encode("utf-16"), "not UTF-8 text (byte 0xff at line 1)"),
    ("a file far too large for a study", b"# " + b"x" * (1 << 20) + b"\n", "bytes, more than a params file holds"),
]


@pytest.mark.parametrize("case, data, fragment", BYTE_CASES, ids=[case for case, _, _ in BYTE_CASES])
def test_params_file_that_is_no_text_gets_one_line(project, capsys, case, data, fragment):
    (project / "params" / "bad.yaml").write_bytes(data)
    assert fragment in refused(project, capsys, ["run", "params/bad.yaml"])


def test_a_billion_laughs_gets_one_line_at_once(project):
    """Some 530 bytes that YAML aliases expand to a billion values: the check for keys given twice walked each
    alias again, at full CPU for minutes; now it visits each node once, and the expanded size is refused. A
    timeout, not a timing: the point is that it ends."""
    text = "study: laughs\nruns:\n  - stage: teacher\n    name: t\n    pretrained_weights:\n" + LAUGHS
    (project / "params" / "laughs.yaml").write_text(text)
    assert 500 < len(text) < 600
    result = subprocess.run([sys.executable, "-m", "dapt", "run", "params/laughs.yaml", "--dry-run"], cwd=project,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=10)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == ("dapt: error: params/laughs.yaml at line 11: YAML aliases expand this value to 1,111,111 "
                             "values, more than a params file holds written out (1,048,576); nest fewer aliases, or "
                             "write the values out\n")
    assert not (project / "runs" / "laughs").exists()


def test_a_folder_given_as_the_params_file(project, capsys):
    assert "params: is a folder, not a params file" in refused(project, capsys, ["run", "params"])


@pytest.mark.parametrize("item, fragment", [
    ("seed=\udcff", "--set 'seed=\\udcff': the value is not a plain YAML value (unacceptable character #xdcff"),
    ("epochs=[1, 2", "--set 'epochs=[1, 2': the value is not a plain YAML value (expected ',' or ']'"),
    ("image_size=99999999999999999999999", "holds 6.93e+37 TB of uint8 images"),
])
def test_set_values_that_do_not_load_or_fit(project, capsys, item, fragment):
    """A --set value from a shell (undecodable bytes reach Python as surrogates) is checked like the file's."""
    (project / "params" / "ok.yaml").write_text("study: ok\nruns: [" + TEACHER + "}]\n")
    assert fragment in refused(project, capsys, ["run", "params/ok.yaml", "--set", item])


def test_a_run_record_that_is_not_utf8_is_a_changed_run_not_a_traceback(project, capsys):
    """params.yaml of a finished run, garbled by an editor: the run counts as done with other parameters."""
    (project / "params" / "ok.yaml").write_text("study: ok\nruns: [" + TEACHER + "}]\n")
    finished_run(project / "runs/ok/t", "teacher", "done", "digits")
    (project / "runs/ok/t/model.pt").write_bytes(b"")
    (project / "runs/ok/t/params.yaml").write_bytes("epochs: caf\xe9\n".encode("latin-1"))
    assert main(["status", "params/ok.yaml"]) == 0
    assert "params differ:" in capsys.readouterr().out
    assert "run 't' is done with other parameters" in refused(project, capsys, ["run", "params/ok.yaml"])


def test_only_that_matches_no_run(project, capsys):
    (project / "params" / "ok.yaml").write_text("study: ok\nruns: [" + TEACHER + "}]\n")
    assert "no run named 'zzz'; runs: t" in refused(project, capsys, ["run", "params/ok.yaml", "--only", "zzz"])


def test_missing_params_file(project, capsys):
    assert "params/none.yaml: no such params file" in refused(project, capsys, ["run", "params/none.yaml"])


def test_study_folder_that_cannot_be_created(project, capsys):
    (project / "params" / "ok.yaml").write_text("study: blocked\nruns: [" + TEACHER + "}]\n")
    (project / "runs" / "blocked").write_text("a file where the study folder belongs")
    assert "cannot create the study folder runs/blocked" in refused(project, capsys, ["run", "params/ok.yaml"])


# --- files the library reads when a run starts --------------------------------------------------

def test_truncated_checkpoint(tmp_path):
    from dapt.training.checkpoint import load_model, save_model
    from dapt.models.nets import create_model

    save_model(tmp_path / "model.pt", create_model("resnet18", 3), {"model": "resnet18", "num_classes": 3,
                                                                     "image_size": 16})
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DaptError, match=r"model.pt is corrupt or not a PyTorch file .*re-run the run that wrote it"):
        load_model(tmp_path / "model.pt")


def test_checkpoint_that_is_not_a_model_file(tmp_path):
    from dapt.training.checkpoint import load_model

    torch.save([1, 2, 3], tmp_path / "model.pt")
    with pytest.raises(DaptError, match="is not a dapt model file .*point to the model.pt of a finished run"):
        load_model(tmp_path / "model.pt")


class _RunsCode:
    """Pickles as a call to Path.touch: loading it unsafely would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_pickled_with_code_is_refused_without_running_it(tmp_path):
    from dapt.training.checkpoint import load_model

    marker = tmp_path / "code-ran"
    torch.save({"format": "dapt-model-v1", "state_dict": _RunsCode(marker)}, tmp_path / "model.pt")
    with pytest.raises(DaptError, match="corrupt or not a PyTorch file"):
        load_model(tmp_path / "model.pt")
    assert not marker.exists(), "unpickling ran code from the checkpoint"


def test_dataset_missing_from_disk_is_caught_before_any_run(project, capsys, monkeypatch):
    """Fashion-MNIST (the default dataset) is looked for in the Debian folder and under data_root."""
    monkeypatch.setenv("DAPT_FASHION_MNIST_DIR", str(project / "nowhere"))
    (project / "params" / "bad.yaml").write_text("study: x\nruns: [{stage: teacher, name: t, data_root: mine}]\n")
    err = refused(project, capsys, ["run", "params/bad.yaml"])
    assert "run 't': Fashion-MNIST not found in" in err and "apt-get install dataset-fashion-mnist" in err
    assert f"{project / 'mine' / 'fashion_mnist'}" in err, "data_root is read relative to the project"


def test_dataset_with_a_missing_file_is_caught_before_any_run(project, capsys):
    folder = project / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in ("batches.meta", "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "test_batch"):
        (folder / name).write_bytes(b"")  # data_batch_5 is missing
    (project / "params" / "bad.yaml").write_text(TEACHER.replace("digits", "cifar10") + "}\n")
    err = refused(project, capsys, ["run", "params/bad.yaml"])
    assert "data_batch_5 is missing; restore it, or delete" in err


def test_download_true_defers_the_dataset_to_the_run(project):
    from dapt.pipeline.study import load_study

    (project / "params" / "later.yaml").write_text(TEACHER.replace("digits", "cifar10") + ", download: true}\n")
    assert load_study("params/later.yaml").runs[0].cfg.download


def test_status_needs_no_dataset(project, capsys):
    (project / "params" / "gone.yaml").write_text(TEACHER.replace("digits", "cifar10") + "}\n")
    assert main(["status", "params/gone.yaml"]) == 0
    assert "t " in capsys.readouterr().out


def test_corrupt_image_in_a_folder_dataset_names_the_file(tmp_path):
    """A DTD layout whose one JPEG was cut in half (an interrupted copy): one line naming that file."""
    from io import BytesIO

    from PIL import Image

    from dapt.data.imageset import load_dataset
    from dapt.core.errors import CorruptImageError

    folder = tmp_path / "dtd" / "dtd"
    (folder / "labels").mkdir(parents=True)
    for split, numbers in (("train1", [1, 2]), ("val1", [3]), ("test1", [4])):
        lines = [f"{c}/{c}_{n}.jpg" for c in ("banded", "dotted") for n in numbers]
        (folder / "labels" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            buffer = BytesIO()
            Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, "JPEG")
            (folder / "images" / line).parent.mkdir(parents=True, exist_ok=True)
            (folder / "images" / line).write_bytes(buffer.getvalue())
    torn = folder / "images" / "dotted" / "dotted_2.jpg"
    torn.write_bytes(torn.read_bytes()[: len(torn.read_bytes()) // 2])
    with pytest.raises(CorruptImageError) as exc:
        load_dataset("dtd", 16, data_root=tmp_path)
    message = str(exc.value)
    assert "\n" not in message and f"cannot decode image {torn}" in message and "replace or re-download" in message
    assert not list((tmp_path / "cache").glob("*.pt")), "a dataset with a broken image was cached"


def test_corrupt_resume_checkpoint_says_to_start_afresh(tmp_path):
    from dapt.pipeline import config
    from dapt.core import records as runs
    from dapt.data.imageset import load_dataset
    from dapt.stages.teacher import train_teacher

    cfg = config.validate(config.TeacherConfig, {
        "dataset": "digits", "image_size": 8, "train_subset": 100, "epochs": 1, "batch_size": 50, "model": "resnet18",
        "init": "fr", "resume": True, "run_dir": str(tmp_path / "t")})
    record = runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg), resume=True)
    (tmp_path / "t" / "last.pt").write_bytes(b"PK\x03\x04 half a zip")
    with pytest.raises(DaptError, match="last.pt is corrupt or not a PyTorch file .*run it again without resume"):
        train_teacher(cfg, load_dataset("digits", 8, train_subset=100, validation=100), record)


def test_teacher_given_as_an_absolute_path_out_of_runs(project, capsys):
    (project / "params" / "bad.yaml").write_text(DISTILL + f", teacher: {project / 'elsewhere'}}}\n")
    assert f"teacher '{project / 'elsewhere'}' is outside runs/" in refused(project, capsys, ["run", "params/bad.yaml"])


def test_imagenet_weights_planted_in_the_hub_cache_with_code_are_refused(tmp_path, monkeypatch):
    """torchvision reads its weights from the torch hub cache, with torch.hub's default weights_only=False:
    a file planted there would run its code when a teacher with init lp/ft is built."""
    from dapt.models.nets import create_model

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    marker = tmp_path / "code-ran"
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save({"fc.weight": _RunsCode(marker)}, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    with pytest.raises(DaptError, match=r"resnet18-f37072fd.pth are unreadable \(UnpicklingError\); delete the file"):
        create_model("resnet18", 10, pretrained=True)
    assert not marker.exists(), "unpickling ran code from the hub cache"


@pytest.mark.parametrize("hostile", ['x"; open("pwned", "w"); "', "x\\\nopen('pwned', 'w')\n", "x\\", "\\\"; 1/0; \""])
def test_a_string_value_cannot_inject_code_into_the_notebook(project, hostile):
    """`dapt run` hands the values to papermill, which writes them into the notebook as Python source:
    every injected line must stay an assignment of a constant, whatever the string holds."""
    import ast

    from papermill.translators import translate_parameters

    from dapt.pipeline.study import load_study

    (project / "params" / "odd.yaml").write_text(TEACHER + ", pretrained_weights: " + json.dumps(hostile) + "}\n")
    spec = load_study("params/odd.yaml").runs[0]
    assert spec.injected["pretrained_weights"] == hostile
    source = translate_parameters("python3", "python", spec.injected, "# Parameters")
    statements = ast.parse(source).body
    assert len(statements) == len(spec.injected)
    assert all(isinstance(s, ast.Assign) and isinstance(s.value, ast.Constant) for s in statements)
    assert {s.targets[0].id: s.value.value for s in statements} == spec.injected


def test_dataset_missing_from_disk_names_the_fix(tmp_path):
    from dapt.data.imageset import load_dataset
    from dapt.core.errors import DatasetMissingError

    with pytest.raises(DatasetMissingError, match="cifar10 not found: expected the folder .*set download: true"):
        load_dataset("cifar10", 32, data_root=tmp_path)


@pytest.mark.parametrize("train_subset, eval_subset, fragment", [
    (300, 2000, "eval_subset=2000 asks for more validation images than the 1,137 training images of digits outside "
                "the train_subset of 300; set eval_subset to at most 1,137, auto or null (all of them)"),
    (300, 5, "eval_subset=5 is fewer than the 10 classes: the validation set needs one image of each; set "
             "eval_subset to at least 10, or auto"),
    (None, 1430, "eval_subset=1430 asks for more validation images than can be held out of training: train_subset "
                 "leaves no training image of digits outside it, so the validation set is split off its 1,437 "
                 "images, and at most 1,427 leave every class one; set eval_subset lower, or auto (10%)"),
])
def test_eval_subset_that_the_training_split_cannot_hold(train_subset, eval_subset, fragment):
    """The validation images come from the training split: a size it cannot give is one line naming the fix."""
    from dapt.data.imageset import load_dataset

    with pytest.raises(DaptError) as caught:
        load_dataset("digits", 8, train_subset=train_subset, validation=eval_subset)
    assert str(caught.value) == fragment


def test_teacher_run_whose_checkpoint_is_gone(tmp_path):
    """A fresh clone holds a teacher's report but not its model.pt: one line says to train it."""
    from dapt.data.imageset import load_dataset
    from dapt.training.checkpoint import load_teacher

    finished_run(tmp_path / "t", "teacher", "done", "digits")
    with pytest.raises(DaptError, match="has its report but no model.pt .*train it first"):
        load_teacher(tmp_path / "t", load_dataset("digits", 8))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_study_folder_that_is_not_writable(project, capsys):
    (project / "params" / "ok.yaml").write_text("study: locked\nruns: [" + TEACHER + "}]\n")
    (project / "runs" / "locked").mkdir()
    (project / "runs" / "locked").chmod(0o500)
    assert "runs/locked is not writable" in refused(project, capsys, ["run", "params/ok.yaml"])


def test_corrupt_image_in_a_synthetic_set(tmp_path):
    """A generated PNG that does not decode: one line naming the file and the fix, nothing written."""
    from dapt.data.imageset import load_dataset
    from dapt.data.synthetic import load_synthetic
    from test_synthetic import write_generate_run

    folder = write_generate_run(tmp_path / "gen", 2)
    bad = folder / "images" / "007_7" / "00000.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    before = snapshot(tmp_path)
    with pytest.raises(DaptError) as caught:
        load_synthetic(folder, "digits", load_dataset("digits", 8).classes, 16)
    message = str(caught.value)
    assert "\n" not in message and "images/007_7/00000.png is corrupt or unreadable" in message
    assert "--force" in message
    assert snapshot(tmp_path) == before, "a failed read of a synthetic set wrote something"


@pytest.mark.parametrize("stage", ["teacher", "distill"])
def test_every_training_stage_runs_the_training_checks(stage):
    # A distill config inherits the distiller settings beside the training ones: both sets of checks must run.
    from dapt.pipeline.config import stage_config

    with pytest.raises(DaptError, match="eval_subset=-3"):
        stage_config(stage)(eval_subset=-3)
