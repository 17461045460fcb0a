"""The console script's re-execution with a caching allocator or glibc's huge pages (nstjax.launch)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from nstjax.launch import (
    TUNABLE,
    allocator_environment,
    find_allocator,
    huge_page_environment,
    launch_environment,
    thp_mode,
)

LINUX = dict(system="Linux", libc="glibc", mode="madvise")
GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"
# The variables that decide the re-execution, removed so each test sets its own.
DECIDING = ("GLIBC_TUNABLES", "NSTJAX_HUGE_PAGES", "NSTJAX_ALLOCATOR", "LD_PRELOAD")


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if k not in DECIDING}, **extra}


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


def test_find_allocator_prefers_tcmalloc_and_obeys_the_variable() -> None:
    installed = {"jemalloc": "libjemalloc.so.2", "tcmalloc_minimal": "libtcmalloc_minimal.so.4"}
    asked: list[str] = []

    def finder(name: str) -> str | None:
        asked.append(name)
        return installed.get(name)

    assert find_allocator({}, finder=finder) == "libtcmalloc_minimal.so.4"
    assert asked == ["tcmalloc_minimal"]  # the first found ends the search
    assert find_allocator({}, finder=lambda name: installed.get(name) if name == "jemalloc" else None) == (
        "libjemalloc.so.2")  # fmt: skip
    assert find_allocator({}, finder=lambda name: None) is None
    assert find_allocator({"NSTJAX_ALLOCATOR": "auto"}, finder=finder) == "libtcmalloc_minimal.so.4"
    for off in ("system", "0", "off"):
        assert find_allocator({"NSTJAX_ALLOCATOR": off}, finder=finder) is None
    assert find_allocator({"NSTJAX_ALLOCATOR": "/opt/lib/libmine.so"}, finder=finder) == "/opt/lib/libmine.so"


def test_allocator_goes_first_and_replaces_the_huge_page_tunable() -> None:
    tc = "libtcmalloc_minimal.so.4"
    env = launch_environment({"A": "1"}, **LINUX, allocator=tc)
    assert env == {"A": "1", "LD_PRELOAD": tc, "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}
    # Other preloads are kept after it; a threshold the user set wins.
    env = allocator_environment({"LD_PRELOAD": "libx.so", "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": "5"},
                                system="Linux", allocator=tc)  # fmt: skip
    assert env["LD_PRELOAD"] == f"{tc} libx.so" and env["TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD"] == "5"
    # Already under a caching allocator (any, or the one named): nothing to do, and no tunable either,
    # so the re-executed process does not re-execute again.
    for preload in (tc, "/usr/lib/libjemalloc.so.2", "x.so:/opt/libmimalloc.so"):
        assert launch_environment({"LD_PRELOAD": preload}, **LINUX, allocator=None) is None
        assert launch_environment({"LD_PRELOAD": preload}, **LINUX, allocator=tc) is None
    assert launch_environment({"LD_PRELOAD": "/opt/libmine.so"}, **LINUX, allocator="/opt/libmine.so") is None
    # No allocator: glibc's huge pages as before; not Linux: nothing.
    assert launch_environment({}, **LINUX, allocator=None) == {"GLIBC_TUNABLES": TUNABLE}
    assert launch_environment({}, **{**LINUX, "system": "Darwin"}, allocator=tc) is None


REPORT = "import os, nstjax.launch as l; l.reexec_with_memory_settings(); print(os.environ.get({!r}))"


@pytest.mark.skipif(thp_mode() != "madvise" or not GLIBC, reason="needs Linux, glibc and THP in madvise mode")
def test_reexec_runs_the_same_command_with_the_tunable() -> None:
    # The same command line runs again (so this prints once, from the re-executed process) with the tunable set.
    code = REPORT.format("GLIBC_TUNABLES")
    env = clean_env(NSTJAX_ALLOCATOR="system")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.splitlines() == [TUNABLE]
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**env, "NSTJAX_HUGE_PAGES": "0"})  # fmt: skip
    assert off.stdout.splitlines() == ["None"]


@pytest.mark.skipif(not GLIBC, reason="LD_PRELOAD and glibc's libanl are Linux/glibc things")
def test_reexec_preloads_the_named_library_once() -> None:
    # libanl (glibc's asynchronous name lookup) stands in for an allocator: on every glibc system, and not
    # loaded by Python itself, so finding it mapped proves the preload; the command prints once.
    code = REPORT.format("LD_PRELOAD") + "; print(any('libanl' in line for line in open('/proc/self/maps')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=clean_env(NSTJAX_ALLOCATOR="libanl.so.1"))  # fmt: skip
    assert out.stdout.splitlines() == ["libanl.so.1", "True"]


@pytest.mark.skipif(not GLIBC or find_allocator({}) is None, reason="no tcmalloc or jemalloc installed")
def test_reexec_preloads_the_installed_allocator() -> None:
    allocator = find_allocator({})
    code = REPORT.format("LD_PRELOAD") + "; print(any({!r} in line for line in open('/proc/self/maps')))".format(
        allocator.split(".so")[0])  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=clean_env())
    assert out.stdout.splitlines() == [allocator, "True"]
