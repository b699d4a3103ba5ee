"""JupyterLab as a way in (issue 21): the kernel and the git filter (repro.lab), paths read against the repository
(repro.paths), progress that ends as one plain line (repro.progress), tables that render (repro.tables)."""
import json
import subprocess

import pandas as pd

from repro import lab, progress
from repro.paths import REPO_ROOT, in_repo, results_root
from repro.reproduce import NOTEBOOK_DIR, _notebook_parameters
from repro.tables import table_markdown, to_markdown
from repro.train import train

from fakes import tiny_config


# ----------------------------------------------------------------------------- kernel and git filter

def test_the_kernel_is_registered_in_the_environment():
    lab.ensure_kernel()
    assert lab.kernel_installed()
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(lab.KERNEL_NAME)
    assert spec.display_name == lab.KERNEL_DISPLAY_NAME and spec.language == "python"
    assert lab.KERNELSPEC == {"display_name": spec.display_name, "language": "python", "name": lab.KERNEL_NAME}


def test_gitattributes_filter_the_notebooks_only():
    """notebooks/*.ipynb go through nbstripout; the executed copies under results/ keep their outputs."""
    def attribute(path: str) -> str:
        return subprocess.run(["git", "check-attr", "filter", "--", path], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.split(": ")[-1].strip()
    assert attribute("notebooks/01_pretrain_and_transfer.ipynb") == lab.FILTER_NAME
    assert attribute("results/01_pretrain_and_transfer/smoke/01_pretrain_and_transfer.ipynb") == "unspecified"


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_the_git_filter_keeps_a_saved_notebook_clean(tmp_path):
    """A notebook saved with outputs, an execution count and a kernel's language_info is, to git, the committed
    one (the filter), and ``git status`` says so once the post-save hook has run; the file keeps its outputs."""
    repo = tmp_path / "clone"
    repo.mkdir()
    git("init", "-q", cwd=repo)
    (repo / ".gitattributes").write_text((REPO_ROOT / ".gitattributes").read_text())
    (repo / "notebooks").mkdir()
    nb = repo / "notebooks" / "01.ipynb"
    nb.write_text((NOTEBOOK_DIR / "01_pretrain_and_transfer.ipynb").read_text())
    assert "configured" in lab.configure_git_filter(repo)
    git("add", ".", cwd=repo)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x", cwd=repo)
    saved = json.loads(nb.read_text())
    saved["metadata"]["language_info"] = {"name": "python", "version": "3.11.9"}
    code = next(c for c in saved["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 1
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["scale smoke\n"]}]
    nb.write_text(json.dumps(saved, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert git("diff", cwd=repo) == ""
    lab.post_save_hook({"type": "notebook"}, str(nb))  # as JupyterLab calls it after a save (make lab)
    assert git("status", "--porcelain", cwd=repo) == ""
    assert "scale smoke" in nb.read_text()
    # A source the user changed stays a change, and nothing is staged.
    code["source"] = "print('mine')"
    nb.write_text(json.dumps(saved, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    lab.post_save_hook({"type": "notebook"}, str(nb))
    assert git("status", "--porcelain", cwd=repo) == " M notebooks/01.ipynb\n"


def test_the_git_filter_is_left_alone_outside_a_checkout_and_in_a_linked_worktree(tmp_path):
    assert "no git checkout" in lab.configure_git_filter(tmp_path)
    main = tmp_path / "main"
    main.mkdir()
    git("init", "-q", cwd=main)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x", cwd=main)
    git("worktree", "add", "-q", str(tmp_path / "wt"), cwd=main)
    assert "linked worktree" in lab.configure_git_filter(tmp_path / "wt")
    assert "nbstripout" not in (main / ".git" / "config").read_text()


# ----------------------------------------------------------------------------- paths

def test_relative_paths_are_read_against_the_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert in_repo("results") == REPO_ROOT / "results"
    assert in_repo(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("REPRO_RESULTS_DIR", raising=False)
    assert results_root(None) == REPO_ROOT / "lab" / "results"
    monkeypatch.setenv("REPRO_RESULTS_DIR", str(tmp_path / "mine"))
    assert results_root(None) == tmp_path / "mine"
    assert results_root("results") == REPO_ROOT / "results"


def test_interactive_results_are_ignored_by_git():
    done = subprocess.run(["git", "check-ignore", "-q", "lab/results/01_pretrain_and_transfer/smoke/table.md"],
                          cwd=REPO_ROOT)
    assert done.returncode == 0


def test_reproduce_passes_out_dir_relative_to_the_repository(tmp_path):
    nb = NOTEBOOK_DIR / "01_pretrain_and_transfer.ipynb"
    assert _notebook_parameters(nb, "smoke", REPO_ROOT / "results", None)["out_dir"] == "results"


def test_experiment_folders_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from repro.experiments import cls_vs_gap as exp

    here = exp.get_config("smoke", out_dir="results").out
    monkeypatch.chdir(tmp_path)
    assert exp.get_config("smoke", out_dir="results").out == here == REPO_ROOT / "results" / exp.NAME / "smoke"


def test_run_files_record_paths_relative_to_the_repository(tmp_path, monkeypatch):
    import repro.paths

    monkeypatch.setattr(repro.paths, "REPO_ROOT", tmp_path)  # a repository whose runs lie in runs/
    run_dir = train(tiny_config(tmp_path / "runs"), progress=False)
    assert json.loads((run_dir / "config.json").read_text())["out_dir"] == "runs"


# ----------------------------------------------------------------------------- progress

class FakeHandle:
    def __init__(self, shown):
        self.shown = shown

    def update(self, data, raw=False):
        self.shown.append(data["text/plain"])


def test_a_run_in_a_notebook_ends_as_one_plain_line(tmp_path, monkeypatch, capsys):
    """In a kernel: a text display updated in place (no widget, nothing on stderr), its last text one line naming
    the run and how it ended."""
    shown = []
    monkeypatch.setattr(progress, "in_jupyter_kernel", lambda: True)
    import IPython.display

    def display(data, raw=False, display_id=False):
        assert raw and display_id and set(data) == {"text/plain"}
        shown.append(data["text/plain"])
        return FakeHandle(shown)
    monkeypatch.setattr(IPython.display, "display", display)
    train(tiny_config(tmp_path, steps=4), label="pre-train seed 0")
    final = shown[-1]
    assert final.startswith("ViT-XXS/8 pre-train seed 0, lr ") and "\n" not in final
    for part in ("4 steps", "loss ", "train top-1 ", "test top-1 ", " s"):
        assert part in final, final
    out = capsys.readouterr()
    assert out.err == "" and out.out == ""


def test_a_run_off_a_terminal_prints_only_its_final_line(tmp_path, capsys):
    train(tiny_config(tmp_path, steps=3), label="ViT-XXS/8 fine-tune seed 1")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ViT-XXS/8 fine-tune seed 1, lr ") and "3 steps" in err


def test_lines_mode_shows_no_progress_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(progress.PROGRESS_ENV, "lines")
    line = progress.ProgressLine(10, "x", enabled=not progress.lines_mode())
    line.update(10)
    line.close("done")
    assert capsys.readouterr().err == ""


def test_an_interrupted_line_says_where_it_stopped(capsys):
    line = progress.ProgressLine(10, "decode cifar10/train", unit="images")
    line.update(4)
    line.close()
    line.close("not shown: closed already")
    assert capsys.readouterr().err == "decode cifar10/train: stopped at 4/10 images\n"


# ----------------------------------------------------------------------------- tables

def test_table_cells_show_markdown_and_latex_characters_literally():
    df = pd.DataFrame({"data": ["local $REPRO_DATA_DIR/x | y", "a_b *c* `d` <e>"], "top-1": [1.0, 2.0]})
    md = to_markdown(df)
    assert r"local \$REPRO\_DATA\_DIR/x \| y" in md and r"a\_b \*c\* \`d\` \<e\>" in md
    assert table_markdown(df, note="Data: $REPRO_DATA_DIR/cifar10.").endswith("Data: \\$REPRO_DATA_DIR/cifar10.\n")


def test_a_long_text_repeated_down_a_column_is_listed_once_under_the_table():
    claim = "claim: Without position embeddings the model is clearly worse (App. D.4, Table 8) — ours: undecided"
    other = "claim: The kind of position encoding barely matters: within +-1.5 points (App. D.4) — ours: holds"
    df = pd.DataFrame({"kind": ["none", "1-D", "2-D", "rel"], "paper": [claim, other, other, other]})
    lines = to_markdown(df).splitlines()
    assert lines[2] == "| none | [1] |" and lines[3] == "| 1-D | [2] |"
    assert f"- [1] {claim}" in lines and sum(line.startswith("- [2] claim") for line in lines) == 1
    same = to_markdown(pd.DataFrame({"kind": ["a", "b"], "paper": [claim, claim]})).splitlines()
    assert same[:3] == ["| kind |", "|---|", "| a |"] and f"- paper (every row): {claim}" in same
    # Mostly different long texts (a claims table) stay in their cells.
    unique = pd.DataFrame({"claim": [claim, other]})
    assert claim in to_markdown(unique)
