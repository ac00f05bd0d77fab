"""core.cli.template: docker's --format templates (Go text/template) and table alignment.

Expected outputs and error messages were checked against the docker 28.2 CLI
(Go 1.24's text/template and docker's tabwriter), unless a test says it is a
deliberate difference.
"""
import ast
import pathlib
import random
import subprocess
import sys

import pytest
from hypothesis import given, settings, strategies as st

from core.cli.template import Template, TemplateError, compile_template, format_table, header_name, tabwrite

CONTAINER = {
    "Id": "f2a0c7f1e3b4d5",
    "Name": "/web",
    "Args": ["-g", "daemon off;"],
    "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0},
    "Config": {"Image": "nginx:1.25", "Env": ["PATH=/usr/bin", "A=1"], "Labels": {"b": "2", "a": "1"}},
    "NetworkSettings": {
        "Ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}],
                  "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8443"}]},
        "Networks": {"bridge": {"IPAddress": "172.17.0.2"}, "front": {"IPAddress": "10.0.0.5"}},
    },
}
DATA = {"a": "x", "b": [1, "y", None, {"k": 2, "a": True}], "c": {"z": 1, "a": [1, 2]}, "n": None,
        "f": 1.5, "i": 3, "s": "héllo", "e": [], "ec": {}, "zero": 0, "m": {"a b": "sp"}, "q": ["a", "b"]}


def render(text, data=DATA):
    """A template as inspect/info/version take it (formatter=False: no table or \\t handling)."""
    return compile_template(text, formatter=False).render(data)


def error(text, data=DATA):
    with pytest.raises(TemplateError) as exc:
        render(text, data)
    return str(exc.value)


# ------------------------------------------------------------------ docker's documented examples

@pytest.mark.parametrize("text, expected", [
    ('{{join .Args " , "}}', "-g , daemon off;"),
    ("{{.State.Status}}", "running"),
    ("{{range $p, $conf := .NetworkSettings.Ports}} {{$p}} -> {{(index $conf 0).HostPort}} {{end}}",
     " 443/tcp -> 8443  80/tcp -> 8080 "),
    ("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", "172.17.0.2 10.0.0.5 "),
    ("{{lower (title .Name)}}", "/web"),
    ("{{title .State.Status}} {{upper .State.Status}}", "Running RUNNING"),
    ('{{split .Config.Image ":"}}', "[nginx 1.25]"),
    ('{{index (split .Config.Image ":") 1}}', "1.25"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ("{{range .Config.Env}}{{println .}}{{end}}", "PATH=/usr/bin\nA=1\n"),
    ("{{len .Config.Env}}", "2"),
    ("{{json .State}}", '{"Status":"running","Running":true,"Pid":4242,"ExitCode":0}'),
    ("{{.Config.Env}}", "[PATH=/usr/bin A=1]"),
    ("{{.Config.Labels}}", "map[a:1 b:2]"),
    ('{{if eq .State.ExitCode 0}}ok{{else}}failed{{end}}', "ok"),
    ("{{with .State}}{{.Pid}}{{end}}", "4242"),
    ("{{.Name | printf \"%q\" | upper}}", '"/WEB"'),
    ('{{truncate .Id 6}}|{{pad .State.Status 1 2}}|', "f2a0c7| running  |"),
])
def test_docker_examples(text, expected):
    assert render(text, CONTAINER) == expected


def test_json_of_everything_is_compact_in_dict_order():
    # Deliberate difference: Go sorts map keys; a dict keeps the API's (struct) order.
    assert render("{{json .}}", {"b": [1, "y", None], "a": {"z": 1.5, "t": True}}) == \
        '{"b":[1,"y",null],"a":{"z":1.5,"t":true}}'


# ------------------------------------------------------------------ printing values as Go does

@pytest.mark.parametrize("text, expected", [
    ("{{.a}}|{{.i}}|{{.f}}|{{.zero}}", "x|3|1.5|0"),
    ("{{.b}}", "[1 y <nil> map[a:true k:2]]"),
    ("{{.c}}", "map[a:[1 2] z:1]"),
    ("{{.e}}|{{.ec}}", "[]|map[]"),
    ("{{.n}}|{{.missing}}|{{.missing.deeper}}|{{.}}", "<no value>|<no value>|<no value>|" +
     "map[a:x b:[1 y <nil> map[a:true k:2]] c:map[a:[1 2] z:1] e:[] ec:map[] f:1.5 i:3 m:map[a b:sp] n:<nil> "
     "q:[a b] s:héllo zero:0]"),
    ("{{true}} {{false}}", "true false"),
    ("{{print 123456.0 1234567.0 0.0001 0.00001 1e20 1e21 -0.0 1.0 100.0}}",
     "123456 1.234567e+06 0.0001 1e-05 1e+20 1e+21 -0 1 100"),
    ("{{print 1e6 123456789.0 0.000012 5e-324}}", "1e+06 1.23456789e+08 1.2e-05 5e-324"),
    ("{{index .b 2}}|{{index .c \"nope\"}}", "<no value>|<no value>"),
])
def test_value_printing(text, expected):
    assert render(text) == expected


def test_render_of_none_data_and_non_dict_data():
    assert render("{{.}}|{{.x}}|{{$}}", None) == "<no value>|<no value>|<no value>"
    assert render("{{range .}}[{{.}}]{{end}}", ["a", 1]) == "[a][1]"
    assert render("{{.}}", "plain") == "plain"


# ------------------------------------------------------------------ lexing: literals, trimming, comments

@pytest.mark.parametrize("text, expected", [
    (r'{{"\x41\u00e9\101\t|"}}', "Aé A\t|".replace(" ", "")),
    ("{{`raw\\n\"x\"`}}", 'raw\\n"x"'),
    ("{{0x1F}} {{0o17}} {{017}} {{0b101}} {{1_000}} {{-0x10}} {{+3}}", "31 15 15 5 1000 -16 3"),
    ("{{.5}} {{1e3}} {{0x1p-2}} {{1_0.5}}", "0.5 1000 0.25 10.5"),
    ("{{'a'}} {{'\\n'}}", "97 10"),
    ('{{"{{"}}literal{{"}}"}}', "{{literal}}"),
    ("}} stray {{`}}`}}", "}} stray }}"),
    ("{{ .a -}}   x  {{- .a }}", "xxx"),
    ("{{- \"a\" -}}\n  {{- \"b\" }}  {{ \"c\" -}}  d", "ab  cd"),
    ("a {{- /* comment\nspanning lines */ -}} b", "ab"),
    ("{{/* c */}}a{{- /* c */ -}} b", "ab"),
    ("{{- /* only a comment */ -}}", ""),
    ("{{-3}}", "-3"),
    ("{{\n  .a\n}}", "x"),
    ("{{ .a  |  upper }}", "X"),
])
def test_lexing(text, expected):
    assert render(text) == expected


# ------------------------------------------------------------------ pipelines, variables, control flow

@pytest.mark.parametrize("text, expected", [
    ('{{.a | printf "%s-%s" "p"}}', "p-x"),
    ("{{.b | len | printf \"%d items\"}}", "4 items"),
    ("{{.a |}}", "x"),  # Go accepts a trailing pipe
    ("{{print (print 1) .a}}", "1x"),
    ("{{(.c).z}} {{(index .b 3).k}} {{index .b 3 \"a\"}}", "1 2 true"),
    ("{{$x := 1}}{{$x}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "12"),
    ("{{$x := \"a\"}}{{with $x := \"b\"}}{{$x}}{{end}}{{$x}}", "ba"),
    ("{{$x := 1}}{{range .b}}{{$x = .}}{{end}}{{$x}}", "map[a:true k:2]"),
    ("{{with .c}}{{.z}}{{$.a}}{{end}}", "1x"),
    ("{{$s := .c}}{{$s.z}} {{$.c.z}}", "1 1"),
    ("{{if .n}}a{{else if .f}}b{{else}}c{{end}}", "b"),
    ("{{if .n}}a{{else if .zero}}b{{else}}c{{end}}", "c"),
    ("{{with .missing}}x{{else with .a}}{{.}}{{end}}", "x"),
    ("{{with .n}}x{{else}}nil{{end}} {{with .e}}x{{else}}empty{{end}}", "nil empty"),
    ("{{if .c}}c{{end}}{{if .e}}e{{end}}{{if .ec}}ec{{end}}{{if .f}}f{{end}}{{if 0.0}}z{{end}}{{if \"\"}}s{{end}}", "cf"),
    ("{{range $i, $e := .b}}{{$i}}={{$e}};{{end}}", "0=1;1=y;2=<no value>;3=map[a:true k:2];"),
    ("{{range $k, $v := .c}}{{$k}}={{$v}};{{end}}", "a=[1 2];z=1;"),
    ("{{range $v := .c}}{{$v}};{{end}}", "[1 2];1;"),
    ("{{range .q}}{{.}}{{else}}none{{end}}|{{range .e}}x{{else}}none{{end}}|{{range .missing}}x{{else}}none{{end}}",
     "ab|none|none"),
    ("{{range 3}}{{.}}{{end}}|{{range 0}}x{{else}}none{{end}}|{{range -2}}x{{end}}", "012|none|"),
    ("{{range .q}}{{if eq . \"a\"}}{{continue}}{{end}}{{.}};{{end}}", "b;"),
    ("{{range $i, $e := .b}}{{if eq $i 2}}{{break}}{{end}}{{$e}},{{end}}", "1,y,"),
    ("{{range $i, $a := .q}}{{if $i}},{{end}}{{$a}}{{end}}", "a,b"),
    ("{{$i := 0}}{{range $i = .q}}{{end}}{{$i}}", "b"),
    ('{{$k := ""}}{{$v := 0}}{{range $k, $v = .c}}{{end}}{{$k}}={{$v}}', "z=1"),
    ("{{range .q}}{{$.a}}:{{.}} {{end}}", "x:a x:b "),
    ("{{range $r := .rows}}{{range $r}}{{.}}{{end}};{{end}}", "12;34;"),
])
def test_pipelines_variables_and_actions(text, expected):
    assert render(text, {**DATA, "rows": [[1, 2], [3, 4]]}) == expected


# ------------------------------------------------------------------ functions

@pytest.mark.parametrize("text, expected", [
    ("{{and .n (index .n 5)}}|{{or .a (index .n 5)}}|{{and .a .f}}|{{or .n .zero}}", "<no value>|x|1.5|0"),
    ("{{and 1 0 2}}{{or 0 \"\" 3}}{{and 1 2}}", "032"),
    ("{{not .n}} {{not .b}} {{not .e}} {{not .zero}} {{not .c}}", "true false true true false"),
    ("{{len .b}} {{len .c}} {{len .s}} {{len \"日本\"}}", "4 2 6 6"),  # a string's length is in bytes
    ("{{index .b 1}} {{index .m \"a b\"}} {{index \"abc\" 0}} {{index .b}}", "y sp 97 [1 y <nil> map[a:true k:2]]"),
    ("{{slice .b 1 2}} {{slice .b 3}} {{slice \"abcd\" 1 3}} {{len (slice .b 1)}} {{slice .s 1}}",
     "[y] [map[a:true k:2]] bc 3 éllo"),
    ('{{eq .s "héllo" "x"}} {{ne .s .s}} {{eq .n nil}} {{eq .s nil}} {{eq .n .missing}}', "true false true false true"),
    ("{{eq 1 2 3 1}} {{eq .i 3}} {{eq true true}}", "true true true"),
    ('{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}} {{lt "a" "b"}} {{gt .f 1}}', "true true true false true true"),
    ("{{eq 1 1.0}} {{lt 1 2.5}}", "true true"),  # deliberate: Go refuses to compare int with float64
    ('{{print "a" 1 2 "b" 3.5 true nil}}', "a1 2b3.5 true <nil>"),
    ("{{print 1 2}}{{print \"a\" \"b\"}}{{println 1 \"a\"}}{{println}}", "1 2ab1 a\n\n"),
    ('{{html "<a&b>\\"\'"}}|{{html 1 2}}|{{html}}', "&lt;a&amp;b&gt;&#34;&#39;|1 2|"),
    ('{{js "a\'<\\"\\\\=>&\\u0001é\\u2028"}}', "a\\'\\u003C\\\"\\\\\\u003D\\u003E\\u0026\\u0001é\\u2028"),
    ('{{urlquery "a b&c/é~"}}', "a+b%26c%2F%C3%A9~"),
    ('{{split "a,b" ","}} {{split "" ","}} {{len (split "" ",")}} {{split "abc" ""}}', "[a b] [] 1 [a b c]"),
    ('{{join (split "a,b" ",") "-"}} {{join .q ""}}', "a-b ab"),
    ('{{title "hELLO wORLD-foo_bar x.y"}} {{title "élan vital"}}', "HELLO WORLD-Foo_bar X.Y Élan Vital"),
    ('{{upper "straße"}} {{lower "ÀÉ"}}', "STRAßE àé"),
    ('{{truncate "abc" 5}}|{{truncate "abc" 3}}|{{truncate "abc" 0}}|{{pad "" 2 2}}|{{pad "x" 1 2}}|', "abc|abc||| x  |"),
    ('{{truncate "héllo" 2}}', "h"),  # docker cuts bytes; an incomplete character is dropped
    ('{{json "é\\"\\\\/\\n\\t<>&\\u2028"}}', '"é\\"\\\\/\\n\\t<>&\\u2028"'),  # no HTML escaping in docker
    ("{{json .b}}{{json .f}}{{json 1e21}}{{json 1e-7}}{{json 0.000001}}{{json 1e20}}{{json -0.0}}{{json .n}}{{json .missing}}",
     '[1,"y",null,{"k":2,"a":true}]1.51e+211e-70.000001100000000000000000000-0nullnull'),
])
def test_functions(text, expected):
    assert render(text) == expected


def test_json_of_nan_is_empty_as_in_docker():
    assert render("{{json .}}", float("nan")) == ""


@pytest.mark.parametrize("text, expected", [
    ('{{printf "%s %d %v %5.2f|%-5s|%05d|%x|%q|%t" .a 3 .b 3.14159 "ab" 42 "hi" "q\\"" true}}',
     'x 3 [1 y <nil> map[a:true k:2]]  3.14|ab   |00042|6869|"q\\""|true'),
    ('{{printf "%6.2v|%g|%e|%G|%08.3f|%+d|% d|%x|%X|%o|%b|%c|%U|%q" 1.5 1e6 1e6 1e-7 -3.14159 5 5 -255 255 8 5 65 65 65}}',
     "   1.5|1e+06|1.000000e+06|1E-07|-003.142|+5| 5|-ff|FF|10|101|A|U+0041|'A'"),
    ('{{printf "%05s|%05q|%05t|%05v|%-05d|%.3d|%+.2f|%x|% x|%#x|%#o|%8.3e|%v" "ab" "ab" true .n 5 7 2.5 "hé" "ab" 255 8 1234.5 .c}}',
     '000ab|0"ab"|0true|<nil>|5    |007|+2.50|68c3a9|61 62|0xff|010|1.234e+03|map[a:[1 2] z:1]'),
    ('{{printf "%-6s|%6s|" "ab" "cd"}}{{printf "%3c|%-4q|%#q|%#q" 65 66 "x" "a`b"}}', "ab    |    cd|  A|'B' |`x`|\"a`b\""),
    ('{{printf "%.1f %.0f %.2e %5.1g" 2.25 2.5 12345.678 0.000123}}', "2.2 2 1.23e+04 0.0001"),
    ('{{printf "%08.3f|%-8.2f|%+.1e|% .2f" -3.14159 2.5 12345.0 1.5}}', "-003.142|2.50    |+1.2e+04| 1.50"),
    ('{{printf "%x|%X|%#x|%o|%#o|%O|%b|%#b" 255 255 255 8 8 8 5 5}}', "ff|FF|0xff|10|010|0o10|101|0b101"),
    ('{{printf "%5.2s|%.10s|%-5.1s|" "abc" "ab" "xyz"}}', "   ab|ab|x    |"),
    ('{{printf "%.2s|%.0d|%x" "hello" 0 -1}}', "he||-1"),
    ('{{printf "%v %v %v" 1e21 1e-7 5e-324}}', "1e+21 1e-07 5e-324"),
    ('{{printf "%*d|%-*d|%.*f" 4 7 4 7 2 3.14159}}', "   7|7   |3.14"),
    ('{{printf "%q" "\\x00\\u200b\\a☺\\t"}}', '"\\x00\\u200b\\a☺\\t"'),
    ('{{"\\t" | printf "%q"}} {{"\\u00e9" | printf "%q"}} {{"\\x7f" | printf "%q"}} {{printf "%q" "😀"}}',
     '"\\t" "é" "\\x7f" "😀"'),
    ('{{printf "%6.2f|%-8v|%8v" 3.14159 .b .f}}', "  3.14|[1        y        <nil> map[a       :true     k       :2       ]]|     1.5"),
    ('{{printf "%5s|%-5d|%q" .b .b .b}}', '[%!s(int=    1)     y <nil> map[    a:%!s(bool= true)     k:%!s(int=    2)]]|'
     '[1     %!d(string=y    ) <nil> map[%!d(string=a    ):%!d(bool=true ) %!d(string=k    ):2    ]]|'
     '[\'\\x01\' "y" <nil> map["a":%!q(bool=true) "k":\'\\x02\']]'),
    ('{{printf "%s" 5}}{{printf "%T %T %T %T %T %T" .a .f .b .c .n true}}',
     "%!s(int=5)string float64 []interface {} map[string]interface {} <nil> bool"),
    ('{{printf "%d %s" "x"}}|{{printf "%d" 1 2}}|{{printf "%v %s" .n .n}}', "%!d(string=x) %!s(MISSING)|1%!(EXTRA int=2)|<nil> %!s(<nil>)"),
    ('{{printf "%!"}}{{printf "%z" 3}}{{printf "%"}}{{printf "%s"}}|{{printf "%d%%" 50}}', "%!!(MISSING)%!z(int=3)%!(NOVERB)%!s(MISSING)|50%"),
    ('{{printf "%t|%v" 1 true}} {{printf "%5t|%-7v|%q" true .n .s}}', '%!t(int=1)|true  true|<nil>  |"héllo"'),
])
def test_printf(text, expected):
    assert render(text) == expected


# ------------------------------------------------------------------ errors

@pytest.mark.parametrize("text, message", [
    ("{{foo}}", 'template: :1: function "foo" not defined'),
    ("a\nb {{foo}}", 'template: :2: function "foo" not defined'),
    ('{{.a | "x"}}', "template: :1: non executable command in pipeline stage 2"),
    ("{{$y}}", 'template: :1: undefined variable "$y"'),
    ("{{with $x := .a}}{{$x}}{{end}}{{$x}}", 'template: :1: undefined variable "$x"'),
    ("{{/* c */ }}", "template: :1: comment ends before closing delimiter"),
    ("{{/* c ", "template: :1: unclosed comment"),
    ('{{"a".x}}', 'template: :1: unexpected . after term "\\"a\\""'),
    ("{{@}}", 'template: :1: unexpected "@" in command'),
    ("{{.a", "template: :1: unclosed action"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{`abc}}", "template: :1: unterminated raw quoted string"),
    ("{{3x}}", 'template: :1: bad number syntax: "3x"'),
    ("{{print 1e400}}", 'template: :1: illegal number syntax: "1e400"'),
    (r'{{"\q"}}', "template: :1: invalid syntax"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if .a}}", "template: :1: unexpected EOF"),
    ("{{range .q}}x{{else}}", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if .a}}x{{else}}y{{else}}z{{end}}", "template: :1: expected end; found {{else}}"),
    ("{{if .a}}{{end .a}}", 'template: :1: unexpected ".a" in end'),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{$x, $y := 1}}", "template: :1: too many declarations in command"),
    ("{{range $x, $y, $z := .b}}{{end}}", "template: :1: too many declarations in range"),
    ("{{print end}}", "template: :1: unexpected <end> in operand"),
])
def test_parse_errors(text, message):
    with pytest.raises(TemplateError) as exc:
        compile_template(text, formatter=False)
    assert str(exc.value) == message


@pytest.mark.parametrize("keyword", ["define", "template", "block"])
def test_unsupported_actions_are_named(keyword):
    with pytest.raises(TemplateError, match=rf"\{{\{{{keyword}\}}\}} is not supported"):
        compile_template(f'{{{{{keyword} "x"}}}}a{{{{end}}}}')


@pytest.mark.parametrize("text, message", [
    ("{{.n.x}}", 'template: :1:4: executing "" at <.n.x>: nil pointer evaluating interface {}.x'),
    ("{{.f.x}}", 'template: :1:4: executing "" at <.f.x>: can\'t evaluate field x in type interface {}'),
    ("{{.b.x}}", 'template: :1:4: executing "" at <.b.x>: can\'t evaluate field x in type interface {}'),
    ("{{$x := 1}}{{$x.y}}", 'template: :1:15: executing "" at <$x.y>: can\'t evaluate field y in type int'),
    ("line1\n{{.missing.x}}\n  {{.a.b}}", 'template: :3:6: executing "" at <.a.b>: can\'t evaluate field b in type interface {}'),
    ("{{.a .b}}", 'template: :1:2: executing "" at <.a>: a is not a method but has arguments'),
    ("{{.c.z 1}}", 'template: :1:4: executing "" at <.c.z>: z is not a method but has arguments'),
    ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ("{{1 2}}", 'template: :1:2: executing "" at <1>: can\'t give argument to non-function 1'),
    ("{{ (print 1) 2 }}", 'template: :1:3: executing "" at <(print 1) 2>: can\'t give argument to non-function print 1'),
    ('{{range "abc"}}{{.}}{{end}}', 'template: :1:8: executing "" at <"abc">: range can\'t iterate over abc'),
    ("{{range .f}}{{end}}", 'template: :1:8: executing "" at <.f>: range can\'t iterate over 1.5'),
    ("{{range $i, $c := 3}}{{end}}", 'template: :1:18: executing "" at <3>: can\'t use 3 to iterate over more than one variable'),
    ("{{len .n}}", 'template: :1:2: executing "" at <len .n>: error calling len: len of nil pointer'),
    ("{{len 1 2}}", 'template: :1:2: executing "" at <len>: wrong number of args for len: want 1 got 2'),
    ("{{and}}", 'template: :1:2: executing "" at <and>: wrong number of args for and: want at least 1 got 0'),
    ("{{eq 1}}", 'template: :1:2: executing "" at <eq 1>: error calling eq: missing argument for comparison'),
    ("{{upper .missing}}", 'template: :1:8: executing "" at <.missing>: invalid value; expected string'),
    ("{{upper .f}}", 'template: :1:8: executing "" at <.f>: wrong type for value; expected string; got float64'),
    ("{{upper 1}}", 'template: :1:8: executing "" at <1>: expected string; found 1'),
    ('{{truncate "abc" "x"}}', 'template: :1:17: executing "" at <"x">: expected integer; found "x"'),
    ("{{printf 1}}", 'template: :1:9: executing "" at <1>: expected string; found 1'),
    ("{{index .b 7}}", 'template: :1:2: executing "" at <index .b 7>: error calling index: index out of range: 7'),
    ("{{index .b -1}}", 'template: :1:2: executing "" at <index .b -1>: error calling index: index out of range: -1'),
    ('{{index .b "x"}}', 'template: :1:2: executing "" at <index .b "x">: error calling index: '
                         'cannot index slice/array with type string'),
    ("{{index .c 1}}", 'template: :1:2: executing "" at <index .c 1>: error calling index: value has type int; should be string'),
    ("{{index 1 1}}", 'template: :1:2: executing "" at <index 1 1>: error calling index: can\'t index item of type int'),
    ("{{slice .b 2 1}}", 'template: :1:2: executing "" at <slice .b 2 1>: error calling slice: invalid slice index: 2 > 1'),
    ("{{slice .b 0 9}}", 'template: :1:2: executing "" at <slice .b 0 9>: error calling slice: index out of range: 9'),
    ("{{lt true false}}", 'template: :1:2: executing "" at <lt true false>: error calling lt: invalid type for comparison'),
    ("{{lt .n 1}}", 'template: :1:2: executing "" at <lt .n 1>: error calling lt: invalid type for comparison'),
    ('{{lt "a" 1}}', 'template: :1:2: executing "" at <lt "a" 1>: error calling lt: incompatible types for comparison'),
    ("{{eq .b .b}}", 'template: :1:2: executing "" at <eq .b .b>: error calling eq: non-comparable type '
                     '[%!s(int=1) y <nil> map[a:%!s(bool=true) k:%!s(int=2)]]: []interface {}'),
    ('{{join .b ","}}', 'template: :1:7: executing "" at <.b>: wrong type for value; expected []string; got []interface {}'),
])
def test_execution_errors(text, message):
    assert error(text) == message


def test_only_template_error_escapes_on_random_input():
    """Fuzz: whatever is typed, compile_template and render raise TemplateError or succeed."""
    rng = random.Random(1)
    pieces = ["{{", "}}", "{{-", " -}}", ".a", ".b", ".c.z", "$", "$x", ":=", "=", "|", "(", ")", ",", " ", '"s"',
              "`r`", "'c'", "1", "-2", "1.5e3", "0x", "if", "else", "end", "range", "with", "break", "continue",
              "len", "index", "printf", '"%d %s %*v"', "json", "eq", "lt", "and", "slice", "nil", "true", "\n", "/*",
              "*/", "@", "\\", "é", "日", "text"]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        try:
            compile_template(text).render(DATA)
        except TemplateError:
            pass


def test_deep_nesting_is_a_template_error():
    nested = {}
    for _ in range(3000):
        nested = {"x": nested}
    with pytest.raises(TemplateError):
        render("{{json .}}", nested)
    with pytest.raises(TemplateError):
        compile_template("{{" + "(" * 3000 + "1" + ")" * 3000 + "}}")


# ------------------------------------------------------------------ docker's formatter: table, json, \t

def test_table_directive_and_escapes():
    t = compile_template("table {{.ID}}\\t{{.Image}}")
    assert t.is_table and isinstance(t, Template)
    assert t.text == "{{.ID}}\t{{.Image}}"
    assert t.render({"ID": "abc", "Image": "nginx"}) == "abc\tnginx"
    assert t.header() == "ID\tIMAGE"
    assert compile_template("table").is_table and compile_template("table").render({}) == ""
    plain = compile_template("  {{.ID}}\\n  ")
    assert not plain.is_table and plain.render({"ID": "x"}) == "x\n"
    assert compile_template("json").render({"a": 1}) == '{"a":1}'
    raw = compile_template("  {{.ID}}\\t", formatter=False)  # inspect, info, version: the template as is
    assert not raw.is_table and raw.render({"ID": "x"}) == "  x\\t"


def test_header_names():
    assert [header_name(n) for n in ["ID", "Names", "CreatedAt", "RunningFor", "IPAddress", "NetworkID", "HostPort"]] \
        == ["ID", "NAMES", "CREATED AT", "RUNNING FOR", "IP ADDRESS", "NETWORK ID", "HOST PORT"]
    t = compile_template("table {{.ID}}\\t{{.State.Status}}\\t{{.CreatedAt}}\\t{{.Names}}")
    assert t.header() == "ID\tSTATUS\tCREATED AT\tNAMES"
    assert t.header({"ID": "CONTAINER ID", "State.Status": "STATE", "Names": "NAMES!"}) == \
        "CONTAINER ID\tSTATE\tCREATED AT\tNAMES!"


def test_header_functions_as_in_docker():
    """json/split/join/title/lower/upper/truncate leave the column name alone; pad and printf apply."""
    t = compile_template('table {{json .Labels}}\\t{{upper .Names}}\\t{{truncate .ID 3}}\\t{{join .Args ","}}\\t'
                         '{{split .Image ":"}}\\t{{pad .Size 1 1}}\\t{{printf "%.3s" .Command}}')
    assert t.header() == "LABELS\tNAMES\tID\tARGS\tIMAGE\t SIZE \tCOM"
    assert compile_template("table {{$.ID}} {{.X}}").header() == "ID X"
    # a field of a column name is an error, which docker ignores: the header stops there
    assert compile_template("table {{.ID}} {{with .X}}{{.Y}}{{end}}").header() == "ID "


def test_render_all_matches_docker_table_output():
    # docker context ls --format 'table {{.Name}}\t{{.Description}}\t' (note the trailing spaces)
    t = compile_template("table {{.Name}}\\t{{.Description}}\\t")
    items = [{"Name": "default", "Description": "Current DOCKER_HOST based configuration"}]
    assert t.render_all(items) == ("NAME      DESCRIPTION                               \n"
                                   "default   Current DOCKER_HOST based configuration   \n")
    assert t.render_all([]) == "NAME      DESCRIPTION   \n"
    assert compile_template("{{.Name}}").render_all(items) == "default\n"


# ------------------------------------------------------------------ tabwriter

@pytest.mark.parametrize("rows, expected", [
    (['CONTAINER ID\tIMAGE\tCOMMAND\tNAMES', 'f2a0c7f1e3b4\tnginx:latest\t"/docker-entrypoint.…"\tweb',
      '0123456789ab\tbusybox\t"sh"\tvery_long_container_name_here'],
     'CONTAINER ID   IMAGE          COMMAND                  NAMES\n'
     'f2a0c7f1e3b4   nginx:latest   "/docker-entrypoint.…"   web\n'
     '0123456789ab   busybox        "sh"                     very_long_container_name_here\n'),
    (['a\tb\tc', 'dd\te\tf'], 'a         b         c\ndd        e         f\n'),
    (['aaaa\tbbb\td', 'aa\tb\tdd', 'a\t', 'aa\tcccc\teee'],
     'aaaa      bbb       d\naa        b         dd\na         \naa        cccc      eee\n'),
    (['x\ty\t', 'longer cell here\tz\t'], 'x                  y         \nlonger cell here   z         \n'),
    (['\t\tc', 'a\t\t', '\tb'], '                    c\na                   \n          b\n'),
    (['名前\tイメージ\tx', 'web\tnginx\ty', 'e\u0301\tcafe\u0301\tz'],
     '名前      イメージ   x\nweb       nginx      y\ne\u0301         cafe\u0301       z\n'),
    (['only', 'cells', 'here'], 'only\ncells\nhere\n'),
])
def test_tabwrite_matches_docker(rows, expected):
    assert tabwrite("".join(r + "\n" for r in rows)) == expected


def test_tabwrite_edges():
    assert tabwrite("") == ""
    assert tabwrite("a\tb") == "a         b"  # no final newline: none added
    assert tabwrite("a\t") == "a"  # an empty unterminated last cell is not a cell
    assert tabwrite("a\t\n") == "a         \n"
    assert tabwrite("a\tb\n\nlonger than ten\tc\n") == "a         b\n\nlonger than ten   c\n"  # blocks split
    assert tabwrite("a\tb\fccccccccccc\td\n") == "a         b\nccccccccccc   d\n"  # formfeed ends blocks too
    assert tabwrite("a\vb\n") == "a         b\n"
    assert tabwrite("\x1b[1mab\x1b[0m\tc\n") == "\x1b[1mab\x1b[0m" + " " * 3 + "c\n"  # ESC is 0 wide
    assert tabwrite("a\tb\n", minwidth=0, padding=1) == "a b\n"


def test_format_table():
    assert format_table([["NAME", "DRIVER"], ["bridge", "bridge"], ["host", "host"]]) == \
        "NAME      DRIVER\nbridge    bridge\nhost      host\n"
    assert format_table([["a", "b"]], padding=1) == "a         b\n"


# ------------------------------------------------------------------ start-up cost

def test_module_imports_nothing_at_import_time():
    source = pathlib.Path(sys.modules[compile_template.__module__].__file__).read_text()
    top = [n for n in ast.parse(source).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert top == []
    inner = {a.name for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in n.names}
    assert inner <= {"re", "unicodedata"}
    code = ("import sys; before = set(sys.modules); import core.cli.template; "
            "print(sorted(set(sys.modules) - before - {'core', 'core.cli', 'core.cli.template'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "[]"



def _action(parts):
    return "{{." + ".".join(parts) + (" -}}" if len(parts) == 2 else "}}")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.text(alphabet="ab \t\n.{}-", max_size=6),
    st.lists(st.sampled_from(["ID", "Names", "x_1", "A", "", "é", "1a", " B", "range"]), min_size=1,
             max_size=3).map(_action)), max_size=6))
def test_fast_field_lexing_matches_the_regex(parts):
    """`{{.Field}}` actions skip the regular expression; the tokens are the same."""
    from core.cli.template import _lex

    text = "".join(parts)
    try:
        slow = _lex(text, fast=False)
    except TemplateError as exc:
        with pytest.raises(TemplateError) as info:
            _lex(text)
        assert str(info.value) == str(exc)
        return
    assert _lex(text) == slow
