"""A static scan of bash scripts for the external commands they run.

commands(text) returns (line, word, static) for every word in command
position: at the start of a command, after ; & && || | ( and the keywords that
begin a command, inside $(...), `...`, <(...) and >(...), and after the
wrappers exec, timeout, env, nice, nohup, xargs (not after `command -v`, which
only looks a name up). It skips what bash does not run as a command: comments,
quoted text, here-documents, assignments, case patterns, for-lists, [[ ]] and
(( )). `static` is False for a word built from an expansion ("$@", "${a[@]}").
A reasonable approximation of bash's grammar, not a parser: enough for the
project's own scripts, and tested on the constructs they use.
"""

import re

ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
# Words that begin a command, after which the next word is in command position.
LEADING_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "time"}
# Words after which a command may not follow directly (a redirection or ; may).
CLOSING_KEYWORDS = {"fi", "done", "esac", "}"}
COMMAND_OPS = {";", "&", "&&", "||", "|", "|&", "(", ")", ";;", ";&", ";;&", "\n"}
CASE_END_OPS = {";;", ";&", ";;&"}
OP_CHARS = set(";&|()<>\n")
REDIRECT = re.compile(r"[0-9]*(<<<|<<-|<<|<>|>>|>&|<&|&>>|&>|>\||>|<)")
# Wrappers that run their argument: the options each takes that carry a value.
WRAPPERS = {"exec": {"-a"}, "timeout": {"-k", "-s"}, "env": {"-u", "-C", "-S"},
            "nice": {"-n"}, "nohup": set(), "xargs": {"-n", "-I", "-d", "-P", "-L", "-s"}}


class _Lexer:
    """Tokens of one command list: ("word", text, static, line), ("op", op,
    None, line); command substitutions become their own token lists, kept in
    self.nested."""

    def __init__(self, text, start=0, line=1, in_paren=False):
        self.s = text
        self.i = start
        self.line = line
        self.in_paren = in_paren
        self.tokens = []
        self.nested = []
        self.heredocs = []  # (delimiter, strip_tabs) waiting for the next newline

    def peek(self, k=0):
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def run(self):
        depth = 0
        while self.i < len(self.s):
            c = self.peek()
            if c in " \t":
                self.i += 1
            elif c == "\\" and self.peek(1) == "\n":
                self.i += 2
                self.line += 1
            elif c == "#":
                while self.i < len(self.s) and self.peek() != "\n":
                    self.i += 1
            elif c == "\n":
                self.tokens.append(("op", "\n", None, self.line))
                self.i += 1
                self.line += 1
                self._skip_heredocs()
            elif c == "(" and self.peek(1) == "(":
                self.i += 2
                self._skip_balanced("(", ")")
                self._expect("))"[0])
                self.tokens.append(("arith", "((", None, self.line))
            elif self._redirect():
                pass
            elif c in OP_CHARS and not (c in "<>" and self.peek(1) == "("):
                op = self._op()
                if op == "(":
                    depth += 1
                elif op == ")":
                    if self.in_paren and depth == 0:
                        self.i += 1
                        return self
                    depth -= 1
                self.tokens.append(("op", op, None, self.line))
                self.i += len(op)
            else:
                self._word()
        return self

    def _op(self):
        for op in (";;&", ";;", ";&", "&&", "||", "|&"):
            if self.s.startswith(op, self.i):
                return op
        return self.peek()

    def _expect(self, ch):
        if self.peek() == ch:
            self.i += 1

    def _redirect(self):
        m = REDIRECT.match(self.s, self.i)
        if not m or (self.peek() in "<>" and self.peek(1) == "("):
            return False
        op = m.group(1)
        self.i = m.end()
        while self.peek() in " \t":
            self.i += 1
        target, _ = self._word(emit=False)
        if op in ("<<", "<<-"):
            self.heredocs.append((target.strip("'\""), op == "<<-"))
        self.tokens.append(("redir", op, None, self.line))
        return True

    def _skip_heredocs(self):
        for delim, strip_tabs in self.heredocs:
            while self.i < len(self.s):
                end = self.s.find("\n", self.i)
                end = len(self.s) if end < 0 else end
                body = self.s[self.i:end]
                self.i = end + 1
                self.line += 1
                if (body.lstrip("\t") if strip_tabs else body) == delim:
                    break
        self.heredocs = []

    def _skip_balanced(self, open_ch, close_ch):
        depth = 1
        while self.i < len(self.s) and depth:
            c = self.peek()
            if c == "\\":
                self.i += 1
            elif c == "'":
                self.i = self.s.find("'", self.i + 1)
            elif c == open_ch:
                depth += 1
            elif c == close_ch:
                depth -= 1
                if depth == 0:
                    break
            elif c == "\n":
                self.line += 1
            self.i += 1
        self.i += 1  # past the closing character

    def _subst(self):
        """At the body of $( or <( : lex it as its own command list."""
        sub = _Lexer(self.s, self.i, self.line, in_paren=True).run()
        self.nested.append(sub)
        self.i, self.line = sub.i, sub.line

    def _dollar(self):
        """At a $: returns True if it was an expansion (the word is not static)."""
        nxt = self.peek(1)
        if self.s.startswith("$((", self.i):
            self.i += 3
            self._skip_balanced("(", ")")
            self._expect(")")
        elif nxt == "(":
            self.i += 2
            self._subst()
        elif nxt == "{":
            self.i += 2
            self._skip_balanced("{", "}")
        elif nxt == "'":  # $'...': ANSI-C quoting, literal text
            self.i += 2
            while self.i < len(self.s) and self.peek() != "'":
                self.i += 2 if self.peek() == "\\" else 1
            self.i += 1
            return False
        else:
            self.i += 1
            m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9@*#?$!-]").match(self.s, self.i)
            if not m:
                return False
            self.i = m.end()
        return True

    def _backtick(self):
        end = self.i + 1
        while end < len(self.s) and self.s[end] != "`":
            end += 2 if self.s[end] == "\\" else 1
        sub = _Lexer(self.s[self.i + 1:end], 0, self.line).run()
        self.nested.append(sub)
        self.line += self.s.count("\n", self.i, end)
        self.i = end + 1

    def _word(self, emit=True):
        text, static, line = [], True, self.line
        while self.i < len(self.s):
            c = self.peek()
            if c in " \t" or c in OP_CHARS and not (c in "<>" and self.peek(1) == "("):
                if c == "(" and ASSIGNMENT.match("".join(text)) and "".join(text).endswith("="):
                    self.i += 1  # name=( ... ): an array assignment, not a subshell
                    sub = _Lexer(self.s, self.i, self.line, in_paren=True).run()
                    self.nested.extend(sub.nested)
                    self.i, self.line = sub.i, sub.line
                    text.append("(...)")
                    continue
                break
            if c == "\\":
                if self.peek(1) == "\n":
                    self.line += 1
                text.append(self.peek(1))
                self.i += 2
            elif c == "'":
                end = self.s.find("'", self.i + 1)
                text.append(self.s[self.i + 1:end])
                self.line += self.s.count("\n", self.i, end)
                self.i = end + 1
            elif c == '"':
                self.i += 1
                while self.i < len(self.s) and self.peek() != '"':
                    d = self.peek()
                    if d == "\\":
                        text.append(self.peek(1))
                        self.i += 2
                    elif d == "$":
                        static = not self._dollar() and static
                    elif d == "`":
                        self._backtick()
                        static = False
                    else:
                        if d == "\n":
                            self.line += 1
                        text.append(d)
                        self.i += 1
                self.i += 1
            elif c == "$":
                static = not self._dollar() and static
            elif c == "`":
                self._backtick()
                static = False
            elif c in "<>":  # <( ... ) or >( ... ): process substitution
                self.i += 2
                self._subst()
                static = False
            else:
                text.append(c)
                self.i += 1
        word = "".join(text)
        if emit:
            self.tokens.append(("word", word, static, line))
        return word, static


def _analyse(tokens, found):
    expect_cmd = True
    mode = None       # None, "for", "case-word", "case-pattern", "[[", "wrapper"
    wrapper_opts = set()
    wrapper_skip_value = False
    wrapper_duration = False
    n = len(tokens)
    for k, (kind, val, static, line) in enumerate(tokens):
        if kind == "redir":
            continue
        if mode == "for":
            if kind == "op" and val in (";", "\n"):
                mode, expect_cmd = None, True
            continue
        if mode == "case-word":
            if kind == "word" and val == "in":
                mode = "case-pattern"
            continue
        if mode == "case-pattern":
            if kind == "word" and val == "esac":
                mode, expect_cmd = None, False
            elif kind == "op" and val == ")":
                mode, expect_cmd = None, True
            continue
        if mode == "[[":
            if kind == "word" and val == "]]":
                mode, expect_cmd = None, False
            continue
        if kind == "arith":
            expect_cmd = False
            continue
        if kind == "op":
            if val in CASE_END_OPS:
                mode = "case-pattern"
                continue
            if val in COMMAND_OPS:
                expect_cmd, mode = True, None
            continue
        # a word
        if mode == "wrapper":
            if wrapper_skip_value:
                wrapper_skip_value = False
                continue
            if val.startswith("-") and len(val) > 1:
                wrapper_skip_value = val in wrapper_opts
                continue
            if ASSIGNMENT.match(val):
                continue
            if wrapper_duration:
                wrapper_duration = False
                continue
            mode = None
            expect_cmd = True
        if not expect_cmd:
            continue
        if ASSIGNMENT.match(val) and static is not None:
            continue
        if val in LEADING_KEYWORDS:
            continue
        if val in CLOSING_KEYWORDS:
            expect_cmd = False
            continue
        if val in ("for", "select"):
            mode = "for"
            continue
        if val == "case":
            mode = "case-word"
            continue
        if val == "[[":
            mode = "[["
            continue
        if val == "function":
            continue
        if k + 2 < n and tokens[k + 1][:2] == ("op", "(") and tokens[k + 2][:2] == ("op", ")"):
            continue  # name() { ...: a function definition
        found.append((line, val, static))
        expect_cmd = False
        if val == "command" and k + 1 < n and tokens[k + 1][1] in ("-v", "-V"):
            continue  # a look-up, not a run
        if val in WRAPPERS or val == "command":
            mode = "wrapper"
            wrapper_opts = WRAPPERS.get(val, set())
            wrapper_duration = val == "timeout"
            wrapper_skip_value = False


def _collect(lexer, found):
    _analyse(lexer.tokens, found)
    for sub in lexer.nested:
        _collect(sub, found)


def commands(text):
    """(line, word, static) for every word bash would run as a command."""
    found = []
    _collect(_Lexer(text).run(), found)
    return sorted(found)


def functions(text):
    """Names of the functions a script defines (name() or function name)."""
    return set(re.findall(r"^\s*(?:function\s+)?([A-Za-z_][A-Za-z0-9_-]*)\s*\(\)", text, re.M)) | \
        set(re.findall(r"^\s*function\s+([A-Za-z_][A-Za-z0-9_-]*)", text, re.M))
