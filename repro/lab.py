"""JupyterLab as a way in: the project's own kernel and the git filter that keeps committed notebooks clean.

``python -m repro.lab setup`` (run by ``make install``) registers the kernel ``repro-vit`` ("Python (repro-vit)")
inside the environment (``--sys-prefix``: ``make lab`` and ``repro reproduce`` use it) and configures the git filter
``nbstripout`` that ``.gitattributes`` names for ``notebooks/*.ipynb``: git then sees a notebook saved with its
outputs as the committed one, without outputs. ``python -m repro.lab kernel --user`` registers the kernel for a
JupyterLab of one's own (``~/.local/share/jupyter/kernels``). Both work offline.

The committed notebooks name this kernel (``KERNELSPEC``), so opening and saving one in JupyterLab changes nothing
git sees, and papermill runs them with it, so the executed copies under ``results/`` name it too. ``make lab`` also
sets ``post_save_hook``: a notebook saved with outputs but unchanged sources is refreshed in git's index, so that
``git status`` stays clean while the file keeps its outputs.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .paths import REPO_ROOT

KERNEL_NAME = "repro-vit"
KERNEL_DISPLAY_NAME = "Python (repro-vit)"
# The kernelspec a notebook's metadata names (what JupyterLab writes back when it saves one run by this kernel).
KERNELSPEC = {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": KERNEL_NAME}

# The git filter of .gitattributes (``notebooks/*.ipynb filter=nbstripout``): outputs, execution counts and the
# metadata a kernel or a front end adds (language_info's version and the like) are left out of what git sees.
FILTER_NAME = "nbstripout"
STRIP_KEYS = "metadata.language_info"
STRIP_OPTIONS = f"--keep-id --extra-keys {STRIP_KEYS}"  # cell ids kept: a saved notebook keeps the committed ones


def filter_config(python: str = sys.executable) -> dict:
    """The git settings of the filter: ``python -m nbstripout`` cleans what git stores and shows in diffs."""
    command = f'"{python}" -m nbstripout {STRIP_OPTIONS}'
    return {f"filter.{FILTER_NAME}.clean": command, f"filter.{FILTER_NAME}.smudge": "cat",
            f"filter.{FILTER_NAME}.required": "false", "diff.ipynb.textconv": f"{command} -t"}


def kernel_installed(name: str = KERNEL_NAME) -> bool:
    """Whether Jupyter (of this environment) finds a kernel called ``name``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return name in KernelSpecManager().find_kernel_specs()


def install_kernel(*, user: bool = False) -> str:
    """Register this Python as the kernel ``repro-vit`` ("Python (repro-vit)"): inside the environment
    (``sys.prefix``, the default) or, with ``user``, for every JupyterLab of this user. Returns where it went."""
    from ipykernel.kernelspec import install

    return install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, user=user,
                   prefix=None if user else sys.prefix)


def ensure_kernel() -> None:
    """Register the kernel inside the environment when Jupyter does not find it (papermill needs it by name)."""
    if not kernel_installed():
        install_kernel()


def _git(*args: str, cwd: Path = REPO_ROOT) -> Optional[str]:
    """``git args`` in ``cwd``; its output, or None when git is missing or this is no git checkout."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def configure_git_filter(repo: Path = REPO_ROOT) -> str:
    """Write the ``nbstripout`` filter into ``repo``'s ``.git/config`` (``filter_config``; the command is this
    environment's Python, by absolute path, so git finds it from any shell). Returns what was done, in words.

    Nothing is written when ``repo`` is no git checkout (an unpacked archive), nor in a linked worktree, whose
    ``.git/config`` is shared with the main checkout and its other worktrees: there the commands to run are
    returned instead."""
    git_dir, common_dir = _git("rev-parse", "--absolute-git-dir", cwd=repo), \
        _git("rev-parse", "--path-format=absolute", "--git-common-dir", cwd=repo)
    if git_dir is None:
        return "no git checkout here: the notebook filter is not configured (nothing to keep clean)"
    settings = filter_config()
    if common_dir is not None and Path(git_dir).resolve() != Path(common_dir).resolve():
        commands = "; ".join(f"git config {key} '{value}'" for key, value in settings.items())
        return ("a linked worktree shares its .git/config with the main checkout, so the notebook filter was not "
                f"configured here; to configure it for all of them: {commands}")
    for key, value in settings.items():
        if _git("config", "--local", key, value, cwd=repo) is None:
            return f"git config {key} failed: the notebook filter is not configured"
    return f"git filter {FILTER_NAME} configured for notebooks/*.ipynb (see .gitattributes)"


def refresh_in_git(path: str | Path) -> bool:
    """Tell git that the notebook ``path``, just saved, is unchanged when it is so through the filter: when the
    cleaned file (``git hash-object --path``, outputs stripped) is the blob git's index holds, ``git add`` records
    the file's new size and time, and nothing is staged. Returns whether it did.

    git decides that a file whose size changed is modified without running the filter (``git diff`` shows nothing,
    ``git status`` still lists it), so a notebook saved with its outputs needs this to leave ``git status`` clean;
    a notebook whose sources the user changed is left as it is (modified)."""
    path = Path(path).resolve()
    top = _git("rev-parse", "--show-toplevel", cwd=path.parent)
    if top is None:
        return False
    relative = path.relative_to(Path(top).resolve()).as_posix()
    if _git("check-attr", "filter", "--", relative, cwd=Path(top)) != f"{relative}: filter: {FILTER_NAME}":
        return False
    indexed = _git("rev-parse", f":{relative}", cwd=Path(top))
    cleaned = _git("hash-object", f"--path={relative}", "--", relative, cwd=Path(top))
    if indexed is None or cleaned != indexed:
        return False
    return _git("add", "--", relative, cwd=Path(top)) is not None


def post_save_hook(model: dict, os_path: str, contents_manager=None, **kwargs) -> None:
    """Jupyter's post-save hook (``make lab`` sets ``ContentsManager.post_save_hook`` to it): after a notebook
    is saved, ``refresh_in_git``. The file keeps its outputs, so a reopened notebook shows them."""
    if model.get("type") == "notebook":
        refresh_in_git(os_path)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m repro.lab", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup", help="register the kernel inside the environment and configure the git filter")
    kernel = commands.add_parser("kernel", help="register the kernel repro-vit")
    kernel.add_argument("--user", action="store_true", help="for every JupyterLab of this user, not only this "
                                                            "environment's")
    args = parser.parse_args(argv)
    if args.command == "kernel":
        print(f"kernel {KERNEL_NAME} ({KERNEL_DISPLAY_NAME}) registered in {install_kernel(user=args.user)}")
        return 0
    print(f"kernel {KERNEL_NAME} ({KERNEL_DISPLAY_NAME}) registered in {install_kernel()}")
    print(configure_git_filter())
    return 0


if __name__ == "__main__":
    sys.exit(main())
