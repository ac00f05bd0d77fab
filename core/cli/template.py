"""Go ``text/template`` subset, as docker's ``--format`` flag accepts it.

``compile_template`` lexes a template, parses it by recursive descent (after
Go's text/template/parse) into a tree of tuples and returns a ``Template``;
``Template.render`` walks the tree over JSON-shaped data (dict, list, str, int,
float, bool, None), printing values as Go's ``fmt`` does.  ``tabwrite`` is the
tabwriter docker aligns ``table`` output with.  ``TemplateError`` messages read
like Go's: ``template: :1: function "foo" not defined``.

Deliberate differences from Go, whose values carry types that Python data lacks:
ints and floats compare with each other; ``join`` takes any list of strings;
``json`` keeps a dict's key order (Go sorts map keys); errors name ``int``,
``float64``, ``[]interface {}`` and ``map[string]interface {}``.  Not supported:
``define``, ``template`` and ``block`` (a TemplateError), complex numbers,
printf's ``%[n]`` argument indexes and ``%x`` of floats.

Nothing is imported at import time (this sits on the CLI's start-up path):
``re`` is imported and the patterns compiled on first use, and ``unicodedata``
only to measure non-ASCII table cells.
"""

__all__ = ['TemplateError', 'Template', 'compile_template', 'tabwrite', 'format_table', 'header_name']


class TemplateError(Exception):
    """A template that does not parse or fails to execute; str() is the user-facing message."""


class _Break(Exception):
    """{{break}}"""


class _Continue(Exception):
    """{{continue}}"""


_MISSING = type('_Missing', (), {'__repr__': lambda self: '<no value>'})()  # Go's invalid reflect.Value
_NOFINAL = object()  # marks "no value piped in" to a command
_INF = float('inf')
_WS = ' \t\r\n'
_KEYWORDS = {'block', 'break', 'continue', 'define', 'else', 'end', 'if', 'range', 'template', 'with'}
_TOKEN = r"""(?x)
  (?P<rdelim>[ \t\r\n]-}}|}})
| (?P<space>[ \t\r\n]+?(?=[ \t\r\n]-}}|[^ \t\r\n]|$))
| (?P<declare>:=)
| (?P<op>[=|(),])
| (?P<string>"(?:[^"\\\n]|\\[^\n])*")
| (?P<raw>`[^`]*`)
| (?P<rune>'(?:[^'\\\n]|\\[^\n])*')
| (?P<field>\.[^\W\d]\w*)
| (?P<number>[+-]?\.?\d(?:[eEpP][+-]|[\w.])*)
| (?P<dot>\.)
| (?P<var>\$\w*)
| (?P<ident>[^\W\d]\w*)
| (?P<char>(?!["'`])[!-~])
"""
_INT = r'[+-]?(?:0[xX]_?[\da-fA-F][\da-fA-F_]*|0[oO]_?[0-7][0-7_]*|0[bB]_?[01][01_]*|0[0-7_]*|[1-9][\d_]*)'
_FLOAT = (r'[+-]?(?:(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?'
          r'|0[xX][\da-fA-F_]*\.?[\da-fA-F_]*[pP][+-]?\d+)')
_ESCAPES = {'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v', '\\': '\\', '"': '"', "'": "'"}
_UNTERMINATED = {'"': 'unterminated quoted string', '`': 'unterminated raw quoted string',
                 "'": 'unterminated character constant'}


def _re(pattern):
    """The compiled pattern, from re's own cache."""
    import re
    return re.compile(pattern)


def _line(text, pos):
    return text.count('\n', 0, pos) + 1


# ------------------------------------------------------------------ lexer and parser

def _unquote(lit, char=False):
    """Go's strconv.Unquote of a "..." or '...' literal (\\x and octal escapes are bytes)."""
    def escape(m):
        e = m.group(1)
        if len(e) == 1 and e in _ESCAPES and e != ('"' if lit[0] == "'" else "'"):
            return _ESCAPES[e]
        if len(e) < 3:
            raise ValueError(e)
        c = int(e[1:], 16) if e[0] in 'xuU' else int(e, 8)
        if e[0] in 'uU':
            if 0xD800 <= c < 0xE000 or c > 0x10FFFF:
                raise ValueError(e)
            return chr(c)
        if c > 255:
            raise ValueError(e)
        return chr(c if c < 0x80 else 0xDC00 + c)  # a surrogate-escaped byte

    s = _re(r'(?s)\\(x[\da-fA-F]{2}|[0-7]{3}|u[\da-fA-F]{4}|U[\da-fA-F]{8}|.?)').sub(escape, lit[1:-1])
    if char:
        if len(s) != 1:
            raise ValueError(lit)
        return ord(s) - (0xDC00 if '\udc80' <= s <= '\udcff' else 0)
    if any('\udc80' <= c <= '\udcff' for c in s):
        s = s.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
    return s


def _number(s):
    """A Go number literal as an int or a float; ValueError if malformed, OverflowError if too big."""
    t = s.replace('_', '')
    if _re(_INT).fullmatch(s):
        sign, t = (-1 if t[0] == '-' else 1), t.lstrip('+-')
        return sign * int(t, 8 if len(t) > 1 and t[0] == '0' and t[1].isdigit() else 0)
    if not _re(_FLOAT).fullmatch(s):
        raise ValueError(s)
    f = float.fromhex(t) if 'x' in t.lower() else float(t)
    if f in (_INF, -_INF):
        raise OverflowError(s)
    return f


def _lex(text, fast=True):
    """The tokens (kind, value, start, end) of text: 'text', then '{{', the action's tokens
    and '}}' for each action, and a final 'eof'.  Trim markers are applied to the
    neighbouring text and comments are dropped.  ``fast``: plain ``{{.Field}}`` actions are
    tokenized without the regular expression (``core ps`` then never imports ``re``)."""
    toks, pos, trim = [], 0, False

    def fail(at, msg):
        raise TemplateError(f'template: :{_line(text, at)}: {msg}')

    while True:
        start = text.find('{{', pos)
        chunk = text[pos:] if start < 0 else text[pos:start]
        ltrim = start >= 0 and text[start + 2:start + 3] == '-' and text[start + 3:start + 4] in tuple(_WS)
        chunk = chunk.lstrip(_WS) if trim else chunk
        chunk = chunk.rstrip(_WS) if ltrim else chunk
        if chunk:
            toks.append(('text', chunk, pos, pos))
        if start < 0:
            return toks + [('eof', None, len(text), len(text))]
        p = start + (4 if ltrim else 2)
        if text.startswith('/*', p):
            end = text.find('*/', p + 2)
            m = end >= 0 and _re(r'[ \t\r\n]-}}|}}').match(text, end + 2)
            if not m:
                fail(start, 'unclosed comment' if end < 0 else 'comment ends before closing delimiter')
            trim, pos = m.group() != '}}', m.end()
            continue
        toks.append(('{{', '{{', start, p))
        close = text.find('}}', p)
        names = text[p + 1:close].split('.') if fast and close > p and text[p] == '.' else None
        if names and all(n.isascii() and n.isidentifier() for n in names):
            # the common action, {{.Field}} or {{.A.B}}: the tokens the regex would give
            at = p
            for name in names:
                toks.append(('field', name, at, at + 1 + len(name)))
                at += 1 + len(name)
            toks.append(('}}', '}}', close, close + 2))
            trim, pos = False, close + 2
            continue
        token = _re(_TOKEN)
        while True:
            m = token.match(text, p)
            if not m:
                c = text[p:p + 1]
                fail(p, 'unclosed action' if not c else _UNTERMINATED.get(c, f"bad character U+{ord(c):04X} '{c}'"))
            kind, val, p = m.lastgroup, m.group(), m.end()
            try:
                if kind in ('string', 'raw', 'rune', 'number'):
                    kind, val = 'const', (_unquote(val) if kind == 'string' else _unquote(val, True) if kind == 'rune'
                                          else _number(val) if kind == 'number' else val[1:-1].replace('\r', ''))
            except OverflowError:
                fail(m.start(), f'illegal number syntax: "{val}"')
            except ValueError:
                fail(m.start(), {'string': 'invalid syntax', 'rune': f'malformed character constant: {val}'}.get(
                    kind, f'bad number syntax: "{val}"'))
            if kind == 'field':
                val = val[1:]
            elif kind == 'ident' and val in _KEYWORDS:
                kind = 'keyword'
            elif kind == 'ident' and val in ('true', 'false', 'nil'):
                kind, val = ('nil', None) if val == 'nil' else ('const', val == 'true')
            elif kind in ('op', 'declare', 'rdelim'):
                kind = '}}' if kind == 'rdelim' else val
            toks.append((kind, val, m.start(), p))
            if kind == '}}':
                trim, pos = val != '}}', p
                break


class _Parser:
    """Recursive descent over the tokens.  Nodes are tuples (kind, pos, src, ...):

    ('text', text)  ('action', pos, src, pipe)  ('break'|'continue', pos, src)
    ('if'|'with'|'range', pos, src, pipe, body, else-body or None)
    ('pipe', pos, src, declared names, is-assignment, cmds)  ('cmd', pos, src, args)
    ('field', pos, src, names)  ('var', pos, src, name, names)  ('chain', pos, src, node, names)
    ('ident', pos, src, name)  ('const', pos, src, value)  ('dot', pos, src)  ('nil', pos, src)
    """

    def __init__(self, text):
        self.text, self.toks, self.i, self.end = text, _lex(text), 0, 0
        self.vars, self.range_depth = ['$'], 0

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        if t[0] != 'space':
            self.end = t[3]
        return t

    def peek(self):
        return self.toks[self.i]

    def next_ns(self):
        t = self.next()
        return self.next() if t[0] == 'space' else t

    def peek_ns(self):
        if self.toks[self.i][0] == 'space':
            self.i += 1
        return self.toks[self.i]

    def fail(self, msg, tok):
        raise TemplateError(f'template: :{_line(self.text, tok[2])}: {msg}')

    def desc(self, tok):
        """A token as Go names it in 'unexpected ...' messages."""
        if tok[0] in ('eof', 'keyword'):
            return 'EOF' if tok[0] == 'eof' else f'<{tok[1]}>'
        s = self.text[tok[2]:tok[3]]
        return _goquote(s[:10]) + '...' if len(s) > 10 else _goquote(s)

    def parse(self):
        nodes, stop = self.list()
        if stop:
            self.fail(f'unexpected {{{{{stop[1]}}}}}', stop)
        return nodes

    def list(self):
        """Nodes up to EOF, {{end}} or {{else}}; returns (nodes, the stopping keyword or None)."""
        nodes = []
        while True:
            t = self.next()
            if t[0] in ('eof', 'text'):
                if t[0] == 'eof':
                    return nodes, None
                nodes.append(('text', t[1]))
                continue
            kw = self.peek_ns()
            if kw[0] != 'keyword':
                pipe = self.pipeline('command', '}}')
                nodes.append(('action', pipe[1], pipe[2], pipe))
                continue
            self.next()
            word = kw[1]
            if word in ('end', 'else'):
                return nodes, kw
            if word in ('if', 'with', 'range'):
                nodes.append(self.control(word, kw))
            elif word in ('break', 'continue'):
                if not self.range_depth:
                    self.fail(f'{{{{{word}}}}} outside {{{{range}}}}', kw)
                self.close(word)
                nodes.append((word, kw[2], word))
            else:
                self.fail(f'{{{{{word}}}}} is not supported (a --format template is a single template)', kw)

    def close(self, context):
        t = self.next_ns()
        if t[0] != '}}':
            self.fail(f'unexpected {self.desc(t)} in {context}', t)

    def control(self, kind, kw):
        mark = len(self.vars)
        pipe = self.pipeline(kind, '}}')
        self.range_depth += kind == 'range'
        body, stop = self.list()
        self.range_depth -= kind == 'range'
        else_ = None
        if stop and stop[1] == 'else':
            nxt = self.peek_ns()
            if kind != 'range' and nxt[0] == 'keyword' and nxt[1] == kind:  # {{else if}}, {{else with}}
                self.next()
                else_ = [self.control(kind, nxt)]  # which consumes the shared {{end}}
            else:
                self.close('else')
                else_, stop = self.list()
                if stop and stop[1] != 'end':
                    self.fail(f'expected end; found {{{{{stop[1]}}}}}', stop)
        if stop is None:
            self.fail('unexpected EOF', self.toks[-1])
        if stop[1] == 'end':
            self.close('end')
        del self.vars[mark:]
        return (kind, kw[2], kind, pipe, body, else_)

    def pipeline(self, context, end):
        start, decl, assign = self.peek_ns(), [], False
        if start[0] == 'var':
            save = self.i
            self.next()
            t = self.peek_ns()
            if t[0] in (':=', '='):
                self.next()
                decl, assign = [start[1]], t[0] == '='
            elif t[0] == ',':
                self.next()
                if context != 'range':
                    self.fail(f'too many declarations in {context}', t)
                var, op = self.next_ns(), self.next_ns()
                if var[0] != 'var' or op[0] not in (':=', '='):
                    self.fail('too many declarations in range' if op[0] == ','
                              else 'range can only initialize variables', var)
                decl, assign = [start[1], var[1]], op[0] == '='
            else:
                self.i = save
            self.vars.extend(decl)
        cmds = []
        while True:
            t = self.next_ns()
            if t[0] == end:
                break
            if t[0] not in ('const', 'dot', 'field', 'ident', 'nil', 'var', '('):
                self.fail(f'unexpected {self.desc(t)} in {context}', t)
            self.i -= 1
            cmds.append(self.command())
        if not cmds:
            self.fail(f'missing value for {context}', t)
        for stage, cmd in enumerate(cmds[1:], 2):
            if cmd[3][0][0] in ('const', 'dot', 'nil'):
                self.fail(f'non executable command in pipeline stage {stage}', t)
        return ('pipe', start[2], self.text[start[2]:t[2]].strip(_WS), decl, assign, cmds)

    def command(self):
        args, start = [], self.peek_ns()
        while True:
            self.peek_ns()
            op = self.operand()
            if op:
                args.append(op)
                end = self.end
            t = self.next()
            if t[0] == 'space':
                continue
            if t[0] in ('}}', ')'):
                self.i -= 1
            elif t[0] != '|':
                self.fail(f'unexpected {self.desc(t)} in operand', t)
            break
        if not args:
            self.fail('empty command', t)
        return ('cmd', start[2], self.text[start[2]:end], args)

    def operand(self):
        start = self.peek()
        node = self.term()
        if node is None or self.peek()[0] != 'field':
            return node
        pos, names = self.peek()[2], []
        while self.peek()[0] == 'field':
            names.append(self.next()[1])
        src = self.text[start[2]:self.end]
        if node[0] in ('const', 'nil', 'dot'):
            self.fail(f'unexpected . after term {_goquote(node[2])}', start)
        if node[0] == 'field':
            return ('field', pos, src, node[3] + names)
        return ('var', pos, src, node[3], names) if node[0] == 'var' else ('chain', pos, src, node, names)

    def term(self):
        t = self.next_ns()
        kind, val, pos = t[0], t[1], t[2]
        src = self.text[pos:t[3]]
        if kind == 'ident':
            if val not in _FUNCS:
                self.fail(f'function "{val}" not defined', t)
            return ('ident', pos, src, val)
        if kind == 'var':
            if val not in self.vars:
                self.fail(f'undefined variable "{val}"', t)
            return ('var', pos, src, val, [])
        if kind in ('field', 'const'):
            return (kind, pos, src, [val] if kind == 'field' else val)
        if kind in ('dot', 'nil'):
            return (kind, pos, src)
        if kind == '(':
            pipe = self.pipeline('parenthesized pipeline', ')')
            return ('pipe', pos, self.text[pos:self.end]) + pipe[3:]
        self.i -= 1
        return None


# ------------------------------------------------------------------ execution

class _Header:
    """The data header() executes over: every field chain gives its column name."""

    def __init__(self, names):
        self.names = names or {}

    def label(self, fields):
        return self.names.get('.'.join(fields), self.names.get(fields[-1], header_name(fields[-1])))


class _Exec:
    """One execution of a template (the state of Go's exec.go)."""

    def __init__(self, text, root, header):
        self.text, self.header, self.vars = text, header, [['$', root]]

    def fail(self, node, msg):
        text, pos = self.text, node[1]
        col = pos - text.rfind('\n', 0, pos) - 1
        raise TemplateError(f'template: :{_line(text, pos)}:{col}: executing "" at <{node[2]}>: {msg}')

    def walk(self, nodes, dot, out):
        for n in nodes:
            kind = n[0]
            if kind == 'text':
                out.append(n[1])
            elif kind == 'action':
                value = self.pipe(n[3], dot)
                if not n[3][3]:
                    out.append('<no value>' if value is _MISSING else _gostr(value))
            elif kind in ('if', 'with'):
                mark = len(self.vars)
                value = self.pipe(n[3], dot)
                if _truth(value):
                    self.walk(n[4], value if kind == 'with' else dot, out)
                elif n[5]:
                    self.walk(n[5], dot, out)
                del self.vars[mark:]
            elif kind == 'range':
                self.range(n, dot, out)
            else:
                raise _Break if kind == 'break' else _Continue

    def range(self, node, dot, out):
        pipe, body, else_ = node[3:]
        decl, assign = pipe[3], pipe[4]
        mark = len(self.vars)
        value = self.pipe(pipe, dot)
        if isinstance(value, dict):
            items = [(k, value[k]) for k in _sorted(value)]
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif type(value) is int:
            if len(decl) > 1:
                self.fail(pipe[5][-1], f"can't use {value} to iterate over more than one variable")
            items = [(i, i) for i in range(value)]
        elif value is _MISSING:
            items = []
        else:
            self.fail(pipe[5][-1], f"range can't iterate over {_gostr(value)}")
        base = len(self.vars)
        for key, elem in items:
            for j, v in enumerate((key, elem) if len(decl) > 1 else (elem,)[:len(decl)]):
                if assign:
                    self.var(pipe, decl[j], v)
                else:
                    self.vars[mark + j][1] = v
            try:
                self.walk(body, elem, out)
            except _Break:
                break
            except _Continue:
                pass
            finally:
                del self.vars[base:]
        if not items and else_:
            self.walk(else_, dot, out)
        del self.vars[mark:]

    def pipe(self, pipe, dot):
        value = _NOFINAL
        for cmd in pipe[5]:
            value = self.command(cmd, dot, value)
            if value is None:  # Go digs a nil out of an interface{}: an invalid value
                value = _MISSING
        for name in pipe[3]:
            if pipe[4]:
                self.var(pipe, name, value)
            else:
                self.vars.append([name, value])
        return value

    def command(self, cmd, dot, final):
        args = cmd[3]
        first, kind = args[0], args[0][0]
        if kind == 'ident':
            return self.call(first, cmd, dot, args[1:], final)
        if kind in ('field', 'chain') or (kind == 'var' and first[4]):
            return self.fields(first, dot, len(args) > 1 or final is not _NOFINAL)
        if len(args) > 1 or final is not _NOFINAL:
            name = first[2][1:-1] if kind == 'pipe' else first[2]
            self.fail(cmd if kind == 'pipe' else first, f"can't give argument to non-function {name}")
        if kind == 'nil':
            self.fail(first, 'nil is not a command')
        return self.arg(first, dot)

    def arg(self, node, dot):
        kind = node[0]
        if kind in ('dot', 'const', 'nil'):
            return dot if kind == 'dot' else node[3] if kind == 'const' else None
        if kind == 'pipe':
            return self.pipe(node, dot)
        if kind == 'ident':
            return self.call(node, node, dot, (), _NOFINAL)
        return self.var(node, node[3]) if kind == 'var' and not node[4] else self.fields(node, dot, False)

    def fields(self, node, dot, has_args):
        """Evaluate a field chain: .A.B, $x.A.B or (pipeline).A.B."""
        kind = node[0]
        recv = dot if kind == 'field' else self.var(node, node[3]) if kind == 'var' else self.arg(node[3], dot)
        names = node[3] if kind == 'field' else node[4]
        if isinstance(recv, _Header):
            return recv.label(names)
        boxed = False  # Go sees a value taken out of a map as an interface{}
        for i, name in enumerate(names):
            if recv is _MISSING:
                return _MISSING
            if isinstance(recv, dict):
                if has_args and i == len(names) - 1:
                    self.fail(node, f'{name} is not a method but has arguments')
                recv, boxed = recv.get(name, _MISSING), True
            elif recv is None:
                self.fail(node, f'nil pointer evaluating interface {{}}.{name}')
            else:
                self.fail(node, f"can't evaluate field {name} in type {'interface {}' if boxed else _gotype(recv)}")
        return recv

    def var(self, node, name, value=_NOFINAL):
        """Look up a variable, or set it when a value is given."""
        for var in reversed(self.vars):
            if var[0] == name:
                if value is _NOFINAL:
                    return var[1]
                var[1] = value
                return value
        self.fail(node, f'undefined variable: {name}')

    def call(self, ident, cmd, dot, argnodes, final):
        name = ident[3]
        fn, least, most, types = _FUNCS[name]
        n = len(argnodes) + (final is not _NOFINAL)
        if n < least or (most is not None and n > most):
            want = f'at least {least}' if most is None else least
            self.fail(ident, f'wrong number of args for {name}: want {want} got {n}')
        if fn is None:  # and, or: evaluate up to the first falsy/truthy argument
            value = None
            for a in argnodes:
                value = self.arg(a, dot)
                if _truth(value) == (name == 'or'):
                    return value
            return value if final is _NOFINAL else final
        values, nodes = [self.arg(a, dot) for a in argnodes], list(argnodes)
        if final is not _NOFINAL:
            values.append(final)
            nodes.append(cmd)
        if self.header is not None and name in _HEADER_VERBATIM:
            return values[0]  # docker's HeaderFunctions
        for value, node, ty in zip(values, nodes, types):
            if value is None or value is _MISSING:
                self.fail(node, f'invalid value; expected {ty}')
            if not (isinstance(value, str) if ty == 'string' else type(value) is int if ty == 'int' else
                    isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)):
                self.fail(node, f'expected {"integer" if ty == "int" else ty}; found {node[2]}' if node[0] == 'const'
                          else f'wrong type for value; expected {ty}; got {_gotype(value)}')
        try:
            return fn(*[None if v is _MISSING else v for v in values])
        except Exception as e:  # noqa: BLE001 - a function's failure is the template's error
            self.fail(cmd, f'error calling {name}: {e}')


# ------------------------------------------------------------------ printing values

_GOTYPES = {bool: 'bool', int: 'int', float: 'float64', str: 'string', list: '[]interface {}',
            tuple: '[]interface {}', dict: 'map[string]interface {}', type(None): '<nil>'}


def _gotype(v):
    return '<nil>' if v is _MISSING else _GOTYPES.get(type(v), type(v).__name__)


def _sorted(d):
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=str)


def _truth(v):
    """Go's truth: false, 0, nil, and empty strings, lists and maps are false."""
    if v is None or v is _MISSING:
        return False
    return bool(v) if isinstance(v, (bool, int, float, str, list, tuple, dict)) else True


def _float(f, mode='v', e='e'):
    """Go's shortest formatting of a float: mode 'v' as fmt's %v, 'json' as encoding/json."""
    if f != f or f in (_INF, -_INF):
        if mode == 'json':
            raise ValueError(f'json: unsupported value: {f}')
        return 'NaN' if f != f else '+Inf' if f > 0 else '-Inf'
    sign, ip, fp, exp = _re(r'(-?)(\d+)\.?(\d*)(?:e([-+]\d+))?').fullmatch(repr(f)).groups()
    digits = (ip + fp).lstrip('0')
    point = len(ip) + int(exp or 0) - (len(ip + fp) - len(digits))  # f = 0.DIGITS x 10**point
    digits, x = digits.rstrip('0'), point - 1
    if not digits:
        return sign + '0'
    if (not -4 <= x < 6) if mode == 'v' else (not 1e-6 <= abs(f) < 1e21):
        s = f"{sign}{digits[0]}{'.' + digits[1:] if len(digits) > 1 else ''}{e}{'-' if x < 0 else '+'}{abs(x):02d}"
        return s if mode == 'v' else _re(r'e-0(\d)$').sub(r'e-\1', s)
    if point <= 0:
        return f'{sign}0.{"0" * -point}{digits}'
    if point >= len(digits):
        return sign + digits + '0' * (point - len(digits))
    return f'{sign}{digits[:point]}.{digits[point:]}'


def _gostr(v):
    """fmt.Sprint of one value."""
    if v is None or v is _MISSING:
        return '<nil>'
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, (list, tuple)):
        return '[' + ' '.join(map(_gostr, v)) + ']'
    if isinstance(v, dict):
        return 'map[' + ' '.join(f'{_gostr(k)}:{_gostr(v[k])}' for k in _sorted(v)) + ']'
    return '' if isinstance(v, _Header) else v if isinstance(v, str) else str(v)


_QUOTE_ESC = {'\\': '\\\\', '\a': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v'}


def _goquote(s, quote='"'):
    """strconv.Quote, or QuoteRune with quote="'"."""
    out = []
    for c in s:
        o = ord(c)
        if c == quote or c in _QUOTE_ESC:
            out.append(_QUOTE_ESC.get(c, '\\' + c))
        elif c.isprintable() and not 0xD800 <= o < 0xE000:
            out.append(c)
        else:
            out.append(f'\\x{o:02x}' if o < 0x20 or o == 0x7F else f'\\U{o:08x}' if o > 0xFFFF
                       else f'\\u{0xFFFD if 0xD800 <= o < 0xE000 else o:04x}')
    return quote + ''.join(out) + quote


def _pad(s, flags, width, zero=True):
    if width is None or len(s) >= width:
        return s
    fill = width - len(s)
    return s + ' ' * fill if '-' in flags else ('0' if zero and '0' in flags else ' ') * fill + s


def _fmt(v, verb, flags, width, prec, nested=False):
    """Go's fmt of one printf operand (width and prec are ints or None)."""
    if verb == 'T':
        return _pad(_gotype(v), flags, width)
    if isinstance(v, (list, tuple, dict)):  # the verb applies to each element, key and value
        def f(x):
            return _fmt(x, verb, flags, width, prec, True)
        if isinstance(v, dict):
            return 'map[' + ' '.join(f'{f(k)}:{f(v[k])}' for k in _sorted(v)) + ']'
        return '[' + ' '.join(map(f, v)) + ']'
    if v is None or v is _MISSING:
        return '<nil>' if nested else _pad('<nil>', flags, width, False) if verb == 'v' else f'%!{verb}(<nil>)'
    s = None
    if isinstance(v, bool):
        s = verb in 'tv' and _pad('true' if v else 'false', flags, width)
    elif isinstance(v, (int, float)):
        s = _fmt_number(v, verb, flags, width, prec)
    elif isinstance(v, str):
        if verb in 'vsq':
            raw = '#' in flags and '`' not in v and all(c.isprintable() or c == '\t' for c in v)
            s = (f'`{v}`' if raw else _goquote(v)) if verb == 'q' else v if prec is None else v[:prec]
        elif verb in 'xX':
            s = ('0' + verb if '#' in flags else '') + (' ' if ' ' in flags else '').join(
                format(b, '02' + verb) for b in v.encode())
        s = s is not None and _pad(s, flags, width)
    else:
        s = verb in 'vs' and _pad(str(v), flags, width)
    return s if isinstance(s, str) else f'%!{verb}({_gotype(v)}={_fmt(v, "v", flags, width, prec)})'


def _fmt_number(v, verb, flags, width, prec):
    """An int or float under a printf verb; None for a verb that does not apply."""
    prefix = ''
    if isinstance(v, int):
        if verb in 'cqU':
            return _pad({'c': chr(v), 'q': _goquote(chr(v), "'"), 'U': f'U+{v:04X}'}[verb], flags, width)
        if verb not in 'vdboOxX':
            return None
        body = format(abs(v), {'v': 'd', 'O': 'o'}.get(verb, verb))
        if prec is not None:
            body = body.zfill(prec) if v or prec else ''
        prefix = '0o' if verb == 'O' else {'b': '0b', 'o': '0', 'x': '0x', 'X': '0X'}.get(verb, '') if '#' in flags else ''
    elif verb not in 'vgGeEfF':
        return None
    elif v != v or v in (_INF, -_INF):
        return _pad(_float(v), flags, width, False)
    elif verb in 'vgG' and prec is None:
        body = _float(abs(v), e='E' if verb == 'G' else 'e')
    else:
        body = format(abs(v), f".{6 if prec is None else prec}{'g' if verb == 'v' else 'f' if verb == 'F' else verb}")
    sign = '-' if v < 0 or repr(v) == '-0.0' else '+' if '+' in flags else ' ' if ' ' in flags else ''
    if '0' in flags and '-' not in flags and width and (prec is None or isinstance(v, float)):
        body = body.zfill(width - len(sign) - len(prefix))
    return _pad(sign + prefix + body, flags, width, False)


# ------------------------------------------------------------------ functions

def _printf(fmt, *args):
    i = 0

    def one(m):
        nonlocal i
        flags, width, prec, verb = m.groups()
        if verb == '%' or not verb:
            return '%' if verb else '%!(NOVERB)'
        for star in ('width', 'prec'):  # %*d, %.*f: taken from the arguments
            if (width if star == 'width' else prec) == '*':
                n = args[i] if i < len(args) else None
                i += 1
                if type(n) is not int:
                    return '%!(BADWIDTH)' if star == 'width' else '%!(BADPREC)'
                if star == 'width':
                    width, flags = str(abs(n)), flags + '-' * (n < 0)
                else:
                    prec = str(n) if n >= 0 else None
        if i >= len(args):
            return f'%!{verb}(MISSING)'
        i += 1
        return _fmt(args[i - 1], verb, flags, int(width) if width else None, None if prec is None else int(prec or 0))

    s = _re(r'(?s)%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d*))?(.?)').sub(one, fmt)
    if i < len(args):
        s += '%!(EXTRA ' + ', '.join('<nil>' if a is None else f'{_gotype(a)}={_gostr(a)}' for a in args[i:]) + ')'
    return s


def _sprint(*args):
    """fmt.Sprint: spaces between operands when neither is a string."""
    return ''.join((' ' if i and not isinstance(a, str) and not isinstance(args[i - 1], str) else '') + _gostr(a)
                   for i, a in enumerate(args))


def _escaper(pattern, escape):
    """html, js and urlquery: fmt.Sprint their arguments, then escape what pattern matches."""
    return lambda *a: _re(pattern).sub(lambda m: escape(m.group()), a[0] if len(a) == 1 and isinstance(
        a[0], str) else _sprint(*a))


_HTML = {'&': '&amp;', "'": '&#39;', '<': '&lt;', '>': '&gt;', '"': '&#34;', '\0': '\ufffd'}
_JSON_ESC = {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f'}


def _index(item, *indexes):
    for i in indexes:
        if item is None:
            raise ValueError('index of untyped nil')
        if isinstance(item, (list, tuple, str)):
            seq = item.encode() if isinstance(item, str) else item
            if type(i) is not int:
                raise ValueError(f'cannot index slice/array with type {_gotype(i)}')
            if not 0 <= i < len(seq):
                raise ValueError(f'index out of range: {i}')
            item = seq[i]
        elif isinstance(item, dict):
            if i is not None and not isinstance(i, str):
                raise ValueError(f'value has type {_gotype(i)}; should be string')
            item = item.get(i)
        else:
            raise ValueError(f"can't index item of type {_gotype(item)}")
    return item


def _slice(item, *indexes):
    if item is None or not isinstance(item, (str, list, tuple)):
        raise ValueError('slice of untyped nil' if item is None else f"can't slice item of type {_gotype(item)}")
    if len(indexes) > 3 or (isinstance(item, str) and len(indexes) == 3):
        raise ValueError('cannot 3-index slice a string' if len(indexes) == 3 else
                         f'too many slice indexes: {len(indexes)}')
    seq = item.encode() if isinstance(item, str) else item
    bounds = [0, len(seq)]
    for j, i in enumerate(indexes):
        if type(i) is not int:
            raise ValueError(f'cannot index slice/array with type {_gotype(i)}')
        if not 0 <= i <= len(seq):
            raise ValueError(f'index out of range: {i}')
        if j < 2:
            bounds[j] = i
    if bounds[0] > bounds[1]:
        raise ValueError(f'invalid slice index: {bounds[0]} > {bounds[1]}')
    part = seq[bounds[0]:bounds[1]]
    return part.decode('utf-8', 'replace') if isinstance(item, str) else list(part)


def _len(v):
    if isinstance(v, (str, list, tuple, dict)):
        return len(v.encode() if isinstance(v, str) else v)
    raise ValueError('len of nil pointer' if v is None else f'len of type {_gotype(v)}')


_KINDS = {bool: 'bool', int: 'number', float: 'number', str: 'string', type(None): 'nil'}


def _eq(a, *others):
    if not others:
        raise ValueError('missing argument for comparison')
    ka = _KINDS.get(type(a))
    for b in others:
        kb = _KINDS.get(type(b))
        if ka is None and kb is None:
            raise ValueError(f'non-comparable type {_fmt(b, "s", "", None, None)}: {_gotype(b)}')
        if ka != kb and 'nil' not in (ka, kb):
            raise ValueError('incompatible types for comparison')
        if ka == kb and a == b:
            return True
    return False


def _lt(a, b):
    ka, kb = _KINDS.get(type(a)), _KINDS.get(type(b))
    if ka not in ('number', 'string') or kb not in ('number', 'string'):
        raise ValueError('invalid type for comparison')
    if ka != kb:
        raise ValueError('incompatible types for comparison')
    return a < b


def _json(v):
    """docker's json function: encoding/json without HTML escaping ('' for NaN and infinities)."""
    def enc(v):
        if v is None or isinstance(v, bool):
            return 'null' if v is None else 'true' if v else 'false'
        if isinstance(v, (int, float)):
            return _float(v, 'json') if isinstance(v, float) else str(v)
        if isinstance(v, (list, tuple)):
            return '[' + ','.join(map(enc, v)) + ']'
        if isinstance(v, dict):
            return '{' + ','.join(f'{enc(str(k))}:{enc(x)}' for k, x in v.items()) + '}'
        return '"' + _re('["\\\\\x00-\x1f\u2028\u2029]').sub(
            lambda m: _JSON_ESC.get(m.group()) or f'\\u{ord(m.group()):04x}', str(v)) + '"'
    try:
        return enc(v)
    except ValueError:
        return ''


def _case(s, method):
    """Case mapping rune by rune as Go's (no ß -> SS)."""
    return method(s) if s.isascii() else ''.join(m if len(m := method(c)) == 1 else c for c in s)


def _title(s):
    """strings.Title: upper-case the letters that begin words, leave the rest alone."""
    out, prev = [], ' '
    for c in s:
        starts = (not (prev.isalnum() or prev == '_') if prev.isascii() else
                  not (prev.isalpha() or prev.isdecimal()) and prev.isspace())
        out.append(_case(c, str.title) if starts else c)
        prev = c
    return ''.join(out)


def _truncate(s, n):
    b = s.encode()
    if n < 0:
        raise ValueError(f'slice bounds out of range [:{n}]')
    return s if len(b) < n else b[:n].decode('utf-8', 'ignore')


def _call(fn, *args):
    raise ValueError('call of nil' if fn is None else f'non-function of type {_gotype(fn)}')


# name: (function, least args, most args or None, parameter types checked); None function: and, or
_STR = ('string',)
_FUNCS = {
    'and': (None, 1, None, ()), 'or': (None, 1, None, ()), 'not': (lambda v: not _truth(v), 1, 1, ()),
    'call': (_call, 1, None, ()), 'index': (_index, 1, None, ()), 'slice': (_slice, 1, None, ()),
    'len': (_len, 1, 1, ()), 'print': (_sprint, 0, None, ()), 'printf': (_printf, 1, None, _STR),
    'println': (lambda *a: ' '.join(map(_gostr, a)) + '\n', 0, None, ()),
    'html': (_escaper('[&\'<>"\0]', _HTML.get), 0, None, ()),
    'js': (_escaper(r'[\\\'"<>&=\x00-\x1f]|[^\x00-\x7f]', lambda c: '\\' + c if c in '\\\'"' else c if ord(c) > 0x7F
                    and c.isprintable() else f'\\u{ord(c):04X}'), 0, None, ()),
    'urlquery': (_escaper('[^A-Za-z0-9_.~-]', lambda c: '+' if c == ' ' else ''.join(
        f'%{b:02X}' for b in c.encode())), 0, None, ()),
    'eq': (_eq, 1, None, ()), 'ne': (lambda a, b: not _eq(a, b), 2, 2, ()), 'lt': (_lt, 2, 2, ()),
    'le': (lambda a, b: _lt(a, b) or _eq(a, b), 2, 2, ()), 'gt': (lambda a, b: not (_lt(a, b) or _eq(a, b)), 2, 2, ()),
    'ge': (lambda a, b: not _lt(a, b), 2, 2, ()),
    # docker's own functions (cli/templates/templates.go)
    'json': (_json, 1, 1, ()), 'split': (lambda s, sep: s.split(sep) if sep else list(s), 2, 2, _STR * 2),
    'join': (lambda items, sep: sep.join(items), 2, 2, ('[]string', 'string')),
    'title': (_title, 1, 1, _STR), 'lower': (lambda s: _case(s, str.lower), 1, 1, _STR),
    'upper': (lambda s: _case(s, str.upper), 1, 1, _STR),
    'pad': (lambda s, left, right: s and ' ' * left + s + ' ' * right, 3, 3, ('string', 'int', 'int')),
    'truncate': (_truncate, 2, 2, ('string', 'int')),
}
_HEADER_VERBATIM = {'json', 'split', 'join', 'title', 'lower', 'upper', 'truncate'}  # not pad: it aligns


# ------------------------------------------------------------------ public API

def header_name(field):
    """A column name for a field: CamelCase split into upper-case words (CreatedAt -> CREATED AT)."""
    return _re(r'(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])').sub(' ', field).upper()


class Template:
    """A compiled template: render() it for each item; header() is a table's header row."""

    def __init__(self, text, nodes, is_table):
        self.text, self.is_table, self._nodes = text, is_table, nodes

    def __repr__(self):
        return f'Template({self.text!r}, is_table={self.is_table})'

    def render(self, data):
        """Execute over data (a JSON-shaped dict, list or scalar); raises TemplateError."""
        return self._execute(_MISSING if data is None else data, None)

    def header(self, names=None):
        """The header row: each field chain is replaced by its column name, header_name(field)
        unless names maps the dotted path ("State.Status") or the last field ("Status") to one.
        As in docker, json, split, join, title, lower, upper and truncate return their
        argument unchanged here (pad and printf still apply), and an error ends the
        header where it occurs rather than raising."""
        root = _Header(names)
        return self._execute(root, root)

    def render_all(self, items, names=None):
        """docker's output for items: a line each; for a table, aligned under the header."""
        rows = ''.join(self.render(item) + '\n' for item in items)
        return tabwrite(self.header(names) + '\n' + rows) if self.is_table else rows

    def _execute(self, root, header):
        out = []
        try:
            _Exec(self.text, root, header).walk(self._nodes, root, out)
        except Exception as e:  # noqa: BLE001 - nothing but TemplateError may escape
            if header is not None:  # docker ignores errors in the header: what was written stays
                pass
            elif isinstance(e, TemplateError):
                raise
            elif isinstance(e, RecursionError):
                raise TemplateError('template: executing "": data or template nested too deeply') from None
            else:
                raise TemplateError(f'template: executing "": {type(e).__name__}: {e}') from e
        return ''.join(out)


def compile_template(text, *, formatter=True):
    """Parse a --format template; raises TemplateError.

    formatter=True is docker's formatter package (ps, images, network ls, ...): a
    leading "table" sets is_table and is removed, "json" means {{json .}}, spaces
    around are trimmed, and the two-character sequences \\t and \\n become a tab and
    a newline.  inspect, info and version take the Go template as is: formatter=False."""
    is_table = False
    if formatter:
        if text == 'json':
            text = '{{json .}}'
        elif text.startswith('table'):
            is_table, text = True, text[5:]
        text = text.strip(' ').replace('\\t', '\t').replace('\\n', '\n')
    try:
        return Template(text, _Parser(text).parse(), is_table)
    except TemplateError:
        raise
    except RecursionError:
        raise TemplateError('template: :1: template nested too deeply') from None
    except Exception as e:  # noqa: BLE001
        raise TemplateError(f'template: :1: {type(e).__name__}: {e}') from e


def tabwrite(text, minwidth=10, padding=3):
    """docker's tabwriter: Go's text/tabwriter, NewWriter(out, minwidth, 1, padding, ' ', 0),
    measuring cells as go-runewidth does.

    Cells are terminated by tabs.  Over each block of consecutive lines that have a
    column, its width is the widest cell plus padding, and at least minwidth; the
    last cell of a line belongs to no column and is not padded."""
    segments = text.replace('\v', '\t').split('\f')  # a formfeed ends every column block
    out = []
    for n, segment in enumerate(segments):
        lines = [line.split('\t') for line in segment.split('\n')]
        if n == len(segments) - 1 and lines[-1][-1] == '':
            lines[-1].pop()  # Flush does not terminate an empty trailing cell
        res = []
        _tw_format(lines, [], 0, len(lines), minwidth, padding, res)
        out.append('\n'.join(res))
    return '\n'.join(out)


def _tw_format(lines, widths, line0, line1, minwidth, padding, res):
    column, this = len(widths), line0
    while this < line1:
        if column < len(lines[this]) - 1:  # a block of this column begins
            _tw_write(lines, widths, line0, this, res)
            line0, width = this, minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, _width(lines[this][column]) + padding)
                this += 1
            _tw_format(lines, widths + [width], line0, this, minwidth, padding, res)
            line0 = this
        this += 1
    _tw_write(lines, widths, line0, line1, res)


def _tw_write(lines, widths, line0, line1, res):
    for cells in lines[line0:line1]:
        res.append(''.join(c + ' ' * (widths[j] - _width(c)) if j < len(widths) else c for j, c in enumerate(cells)))


def _width(s):
    """Display width as go-runewidth has it: East Asian wide characters count 2,
    control, combining and zero-width characters 0."""
    if s.isascii():
        return len(s) if s.isprintable() else sum(' ' <= c < '\x7f' for c in s)
    import unicodedata
    return sum(0 if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c == '\xad' or unicodedata.category(c) in (
        'Mn', 'Me', 'Cf') else 2 if unicodedata.east_asian_width(c) in 'WF' else 1 for c in s)


def format_table(rows, padding=3):
    """Align rows of cells as docker's tables are (a row's last cell is not padded)."""
    return tabwrite(''.join('\t'.join(row) + '\n' for row in rows), padding=padding)
