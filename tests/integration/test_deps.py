"""scripts/deps.list against the scripts and Debian: every external command
that scripts/*.sh, deploy/*.sh and .ci/run run is listed there (or is a bash
builtin or comes from Debian's Essential set, which every Debian system has),
every step a script asks scripts/deps.sh for exists, every package exists in
Debian (when apt's lists are there), and each installed package does provide
the commands listed for it. A clean machine gets exactly what the list says,
so a command missing from it is a `make test` that fails only on a fresh
machine. No daemons, no build dir: Python 3 standard library only.
"""

import glob
import os
import re
import shutil
import subprocess
import unittest

import shell_scan

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MANIFEST = os.path.join(ROOT, "scripts", "deps.list")
SCRIPT_GLOBS = ("scripts/*.sh", "deploy/*.sh", ".ci/run")
EXTERNAL_PREFIX = "@"    # not a Debian package: only checked (Node.js >= 20)
APT_TIMEOUT_S = 60

BASH_BUILTINS = set("""
    . : [ alias bg bind break builtin caller cd command compgen complete continue declare
    dirs disown echo enable eval exec exit export false fc fg getopts hash help history jobs
    kill let local logout mapfile popd printf pushd pwd read readarray readonly return set
    shift shopt source suspend test times trap true type typeset ulimit umask unalias unset
    wait""".split())

# Commands of Debian 12's Essential: yes packages, which a minbase debootstrap
# and every Debian container has and apt refuses to remove. Only the ones a
# script may plausibly use; anything else must be in scripts/deps.list.
ESSENTIAL = {
    "bash": "bash",
    "coreutils": """basename cat chmod chown cp cut date dd df dirname du env expr head id
                    install ln ls mkdir mktemp mv nice nohup nproc readlink realpath rm rmdir
                    seq sha256sum sleep sort stat tail tee timeout touch tr uname uniq wc yes""",
    "dash": "sh",
    "debianutils": "which run-parts",
    "diffutils": "cmp diff",
    "dpkg": "dpkg dpkg-query",
    "findutils": "find xargs",
    "grep": "grep",
    "gzip": "gzip gunzip zcat",
    "hostname": "hostname",
    "libc-bin": "getent ldd",
    "sed": "sed",
    "tar": "tar",
    "util-linux": "flock getopt setsid",
}
ESSENTIAL_COMMANDS = {c for cmds in ESSENTIAL.values() for c in cmds.split()}

# Commands that a listed program runs by itself, which its package does not
# Depend on: nothing in the scripts shows them, so they are written down here.
# (netavark sets up podman's bridge network with iptables; without it a RUN
# apt-get in podman build fails with "netavark: No such file or directory".)
INDIRECT = {("smoke", "netavark"): ("iptables", "iptables")}


def read_manifest():
    """[(line, step, package, [commands])] of scripts/deps.list."""
    rows = []
    with open(MANIFEST, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split("#", 1)[0].split()
            if fields:
                rows.append((n, fields[0], fields[1] if len(fields) > 1 else "",
                             [c for c in fields[2:] if c != "-"]))
    return rows


def scripts():
    paths = []
    for pattern in SCRIPT_GLOBS:
        paths += sorted(glob.glob(os.path.join(ROOT, pattern)))
    return paths


def apt_lists_present():
    return shutil.which("apt-cache") is not None and \
        bool(glob.glob("/var/lib/apt/lists/*_Packages*"))


def installed(pkg):
    if shutil.which("dpkg-query") is None:
        return False
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                       text=True, timeout=APT_TIMEOUT_S)
    return p.returncode == 0 and p.stdout.endswith("install ok installed")


class ShellScanTest(unittest.TestCase):
    """The scan finds commands where bash runs them, and only there."""

    def scan(self, text):
        return [w for _, w, static in shell_scan.commands(text) if static]

    def test_finds_commands_in_every_command_position(self):
        text = r'''#!/bin/bash
a=1 b=$(one --x) two | three && four || five; six & seven
if eight; then nine; elif ten; then eleven; else twelve; fi
while thirteen; do fourteen; done
x=( "$(fifteen)" "sixteen" ) ; echo "$(seventeen "$(eighteen)")" `nineteen`
timeout --kill-after=5 30 twenty arg; timeout 10 "${dyn[@]}" ps
exec twentyone 2>/dev/null; env A=1 twentytwo; (twentythree) 2>&1 >/dev/null
{ twentyfour; } && ! twentyfive
diff <(twentysix) >(twentyseven)
'''
        self.assertEqual(set(self.scan(text)), {
            "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
            "eleven", "twelve", "thirteen", "fourteen", "fifteen", "echo", "seventeen",
            "eighteen", "nineteen", "timeout", "twenty", "exec", "twentyone", "env",
            "twentytwo", "twentythree", "twentyfour", "twentyfive", "diff", "twentysix",
            "twentyseven"})

    def test_skips_what_bash_does_not_run(self):
        text = r'''#!/bin/bash
# comment notacommand
echo 'quoted notacommand' "also notacommand" notacommand
cat <<'EOF' >/tmp/x
RUN heredocnotacommand
EOF
case "$x" in
  pattern | otherpattern) inside ;;
  (third) alsoinside ;;
esac
for p in forword otherword; do body; done
for ((i=0; i<3; i++)); do arithbody; done
[[ $x == notacommand ]] && after
command -v lookedup >/dev/null || fallback
f() { fbody; }
arr=(arrayword other) y=$((1 + 2)) last
'''
        self.assertEqual(set(self.scan(text)), {
            "echo", "cat", "inside", "alsoinside", "body", "arithbody", "after", "command",
            "fallback", "fbody", "last"})

    def test_dynamic_words_are_marked(self):
        found = shell_scan.commands('"$@" &\n"${compose[@]}" up\n$0 x\n')
        self.assertEqual([s for _, _, s in found], [False, False, False])

    def test_lines(self):
        found = shell_scan.commands("one\n\ntwo \\\n  arg\nthree\n")
        self.assertEqual([(n, w) for n, w, _ in found], [(1, "one"), (3, "two"), (5, "three")])


class ManifestTest(unittest.TestCase):

    def setUp(self):
        self.rows = read_manifest()
        self.steps = {step for _, step, _, _ in self.rows}
        self.commands = {}  # command -> [(step, package)]
        for _, step, pkg, cmds in self.rows:
            for c in cmds:
                self.commands.setdefault(c, []).append((step, pkg))

    def test_rows_are_well_formed(self):
        for n, step, pkg, cmds in self.rows:
            with self.subTest(line=n):
                self.assertRegex(step, r"^[a-z]+$")
                self.assertTrue(pkg, "a step without a package")
                if pkg.startswith("step:"):
                    self.assertIn(pkg[5:], self.steps, "no such step")
                    self.assertEqual(cmds, [], "step:NAME takes no commands")
                else:
                    self.assertRegex(pkg, r"^@?[a-z0-9][a-z0-9+.-]+$")

    def test_every_script_command_is_listed(self):
        unlisted = []
        for path in scripts():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            rel = os.path.relpath(path, ROOT)
            own = shell_scan.functions(text)
            for line, word, static in shell_scan.commands(text):
                if not static or word in own or word in BASH_BUILTINS:
                    continue
                if "/" in word and not word.startswith("/"):
                    # a file of the project, run from the repository root
                    if not os.path.exists(os.path.join(ROOT, word)):
                        unlisted.append("%s:%d runs %s, which does not exist" % (rel, line, word))
                    continue
                if word in ESSENTIAL_COMMANDS or word in self.commands:
                    continue
                unlisted.append("%s:%d runs '%s'" % (rel, line, word))
        self.assertEqual(unlisted, [], "commands that scripts/deps.list does not list "
                         "(add: STEP PACKAGE COMMAND):\n  " + "\n  ".join(unlisted))

    def test_scan_sees_the_scripts(self):
        # The scan must be able to fail: it does find the tools the steps run.
        seen = set()
        for path in scripts():
            with open(path, encoding="utf-8") as f:
                seen |= {w for _, w, s in shell_scan.commands(f.read()) if s}
        for c in ("podman", "debootstrap", "docker-compose", "kubectl", "cmake", "ctest",
                  "npm", "python3", "curl", "apt-get", "make"):
            self.assertIn(c, seen)

    def test_steps_asked_for_exist(self):
        for path in scripts():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for m in re.finditer(r"^\s*(?:\S+ )?scripts/deps\.sh((?: [a-z]+)+)", text, re.M):
                for step in m.group(1).split():
                    with self.subTest(script=os.path.relpath(path, ROOT), step=step):
                        self.assertIn(step, self.steps)

    def test_indirect_commands_are_listed(self):
        listed = {(step, pkg) for _, step, pkg, _ in self.rows}
        for (step, pkg), (dep_pkg, dep_cmd) in INDIRECT.items():
            if (step, pkg) in listed:
                with self.subTest(step=step, package=pkg):
                    self.assertTrue((step, dep_pkg) in self.commands.get(dep_cmd, []),
                                    "%s runs %s: step %s must list package %s with "
                                    "command %s" % (pkg, dep_cmd, step, dep_pkg, dep_cmd))

    def test_packages_exist_in_debian(self):
        if not apt_lists_present():
            self.skipTest("no apt lists here (apt-get update has not run)")
        pkgs = sorted({pkg for _, _, pkg, _ in self.rows
                       if not pkg.startswith(("step:", EXTERNAL_PREFIX))})
        # One apt-cache call for all (it reads every list once: about 1 s); it
        # fails when any is unknown, but still prints the ones it knows.
        p = subprocess.run(["apt-cache", "show", "--no-all-versions"] + pkgs,
                           capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        known = set(re.findall(r"^Package: (\S+)$", p.stdout, re.M))
        self.assertEqual([pkg for pkg in pkgs if pkg not in known], [],
                         "packages that apt-cache does not know: " + p.stderr)

    def test_installed_packages_provide_their_commands(self):
        checked = 0
        for _, step, pkg, cmds in self.rows:
            if not cmds or pkg.startswith(("step:", EXTERNAL_PREFIX)) or not installed(pkg):
                continue
            files = self._files_of(pkg)
            for c in cmds:
                with self.subTest(step=step, package=pkg, command=c):
                    self.assertTrue(self._provides(files, c),
                                    "package %s (or what it Depends on) has no %s" % (pkg, c))
                    checked += 1
        if checked == 0:
            self.skipTest("none of the listed packages is installed here")

    @staticmethod
    def _files_of(pkg):
        """The files of pkg and of the first choice of each of its (Pre-)Depends
        (a metapackage such as build-essential provides its commands that way,
        python3 through python3-minimal)."""
        p = subprocess.run(["dpkg-query", "-W", "-f=${Pre-Depends},${Depends}", pkg],
                           capture_output=True, text=True, timeout=APT_TIMEOUT_S)
        names = [pkg] + [re.split(r"[\s(:]", d.split("|")[0].strip())[0]
                         for d in p.stdout.split(",") if d.strip()]
        files = set()
        for name in names:
            q = subprocess.run(["dpkg-query", "-L", name], capture_output=True, text=True,
                               timeout=APT_TIMEOUT_S)
            if q.returncode == 0:
                files |= set(q.stdout.split("\n"))
        return files

    @staticmethod
    def _provides(files, command):
        if command.startswith("/"):
            return command in files
        names = {f for f in files if re.search(r"/s?bin/" + re.escape(command) + "$", f)}
        if names:
            return True
        # a command set up by update-alternatives (iptables): its target counts
        alt = os.path.join("/etc/alternatives", command)
        return os.path.exists(alt) and os.path.realpath(alt) in \
            {os.path.realpath(f) for f in files if f}


if __name__ == "__main__":
    unittest.main()
