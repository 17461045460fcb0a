"""The console script's huge-page re-execution (nstjax.launch)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nstjax.launch import TUNABLE, huge_page_environment, thp_mode

LINUX = dict(system="Linux", libc="glibc", mode="madvise")


def test_adds_the_tunable_only_where_it_helps() -> None:
    assert huge_page_environment({"A": "1"}, **LINUX) == {"A": "1", "GLIBC_TUNABLES": TUNABLE}
    # Other tunables are kept, the new one appended.
    env = huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, **LINUX)
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"
    # Nothing to do: already set (either way), opted out, THP always/never/unknown, not glibc, not Linux.
    assert huge_page_environment({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, **LINUX) is None
    assert huge_page_environment({"NSTJAX_HUGE_PAGES": "0"}, **LINUX) is None
    assert huge_page_environment({"NSTJAX_HUGE_PAGES": "off"}, **LINUX) is None
    for mode in ("always", "never", None):
        assert huge_page_environment({}, **{**LINUX, "mode": mode}) is None
    assert huge_page_environment({}, **{**LINUX, "libc": ""}) is None
    assert huge_page_environment({}, **{**LINUX, "system": "Darwin"}) is None


def test_thp_mode_reads_the_bracketed_word(tmp_path) -> None:
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert thp_mode(str(path)) == "madvise"
    path.write_text("[always] madvise never\n")
    assert thp_mode(str(path)) == "always"
    assert thp_mode(str(tmp_path / "missing")) is None


@pytest.mark.skipif(thp_mode() != "madvise" or sys.platform != "linux", reason="needs Linux with THP in madvise mode")
def test_reexec_runs_the_same_command_with_the_tunable() -> None:
    # The same command line runs again (so this prints once, from the re-executed process) with the tunable set.
    code = "import os, nstjax.launch as l; l.reexec_with_huge_pages(); print(os.environ.get('GLIBC_TUNABLES'))"
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "NSTJAX_HUGE_PAGES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.splitlines() == [TUNABLE]
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "NSTJAX_HUGE_PAGES": "0"})  # fmt: skip
    assert off.stdout.splitlines() == ["None"]
