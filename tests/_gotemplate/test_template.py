"""Go ``text/template`` as ``txcaddy._gotemplate`` runs it: lexing, parsing, execution, errors.

Expected values are Go 1.19's (most also checked against Caddy 2.6.2 through
``tests/http/templates_site``).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from txcaddy._gotemplate import NO_VALUE, ExecError, ParseError, Template, is_true
from txcaddy._gotemplate.sprig import FUNCS


def run(text: str, data: Any = None, name: str = "t", **kw: Any) -> str:
    tpl = Template(name, kw.pop("delims", ("", "")))
    tpl.funcs(FUNCS)
    if kw:
        tpl.funcs(kw)
    return tpl.parse(text).execute(data)


class Obj:
    go_type_name = "main.Obj"

    def __init__(self) -> None:
        self.Name = "obj"
        self.Inner = {"k": "v"}

    def Greet(self, who: str) -> str:  # noqa: N802
        return "hi " + who

    def Fail(self) -> str:  # noqa: N802
        raise ValueError("boom")


class LexTests(SynchronousTestCase):
    """Text, actions, trim markers, comments, literals."""

    def test_text_only(self) -> None:
        """Text without actions is copied as is."""
        self.assertEqual(run("plain { text }"), "plain { text }")

    def test_trim_markers(self) -> None:
        """``{{- `` trims white space before, `` -}}`` after; the space is required."""
        self.assertEqual(run("a  \n {{- 1 -}} \n  b"), "a1b")
        self.assertEqual(run("a {{-3}} b"), "a -3 b")

    def test_comments(self) -> None:
        """Comments print nothing and may carry trim markers."""
        self.assertEqual(run("a {{/* c */}} b {{- /* d */ -}} c"), "a  bc")

    def test_unclosed_comment(self) -> None:
        """An unclosed comment is a parse error."""
        self.assertRaisesRegex(ParseError, r"^template: t:1: unclosed comment$", run, "{{/* x")

    def test_literals(self) -> None:
        """Strings (escapes), raw strings, characters, numbers in Go's bases, booleans."""
        out = run(r'{{ "a\tb\u00e9" }}|{{ `r\n` }}|{{ ' + "'a'" + " }}|{{ 0x1F }}|{{ 0o17 }}|{{ 1_000 }}|{{ 1.5 }}|{{ 1e3 }}|{{ true }}")
        self.assertEqual(out, "a\tbé|r\\n|97|31|15|1000|1.5|1000|true")

    def test_bad_number(self) -> None:
        """A number running into letters is Go's ``bad number syntax``."""
        self.assertRaisesRegex(ParseError, r'bad number syntax: "1x"', run, "{{ 1x2 }}")

    def test_custom_delimiters(self) -> None:
        """Other delimiters leave ``{{ }}`` as text."""
        self.assertEqual(run("[[ 1 ]] {{ 2 }} [[- 3 -]] !", delims=("[[", "]]")), "1 {{ 2 }}3!")

    def test_multiline_action(self) -> None:
        """Actions may span lines."""
        self.assertEqual(run("{{ print\n 1\n 2 }}"), "1 2")


class ParseErrorTests(SynchronousTestCase):
    """Parse errors read as Go's, with the template name and line."""

    def check(self, text: str, message: str) -> None:
        with self.assertRaises(ParseError) as caught:
            run(text, name="page.html")
        self.assertEqual(str(caught.exception), "template: page.html:" + message)

    def test_messages(self) -> None:
        """Each malformed construct gets Go's message."""
        self.check("{{ if .X }}\nx\n", "3: unexpected EOF")
        self.check("{{end}}", "1: unexpected {{end}}")
        self.check("{{else}}", "1: unexpected {{else}}")
        self.check("{{ }}", "1: missing value for command")
        self.check("{{ if }}", "1: missing value for if")
        self.check("{{ $x }}", '1: undefined variable "$x"')
        self.check("{{ nofunc }}", '1: function "nofunc" not defined')
        self.check("{{ break }}", "1: {{break}} outside {{range}}")
        self.check("{{ 1 | 2 }}", "1: non executable command in pipeline stage 2")
        self.check('{{ "s".F }}', '1: unexpected . after term "\\"s\\""')
        self.check("{{ .A ^ }}", '1: unexpected "^" in operand')
        self.check('{{ "abc }}', "1: unterminated quoted string")
        self.check("a {{ .X", "1: unclosed action")
        self.check('{{define "b"}}1{{end}}{{define "b"}}2{{end}}', '1: template: multiple definition of template "b"')


class ExecTests(SynchronousTestCase):
    """Evaluation: fields, variables, pipelines, control structures."""

    def test_fields_and_maps(self) -> None:
        """Map keys and object attributes are fields; a missing key is ``<no value>``."""
        self.assertEqual(run("{{ .a.b }} {{ .x }} {{ .x.y }}", {"a": {"b": 1}}), "1 <no value> <no value>")
        self.assertEqual(run("{{ .Name }} {{ .Inner.k }}", Obj()), "obj v")

    def test_methods(self) -> None:
        """Methods take arguments, also the piped value last."""
        self.assertEqual(run('{{ .Greet "you" }} {{ "me" | .Greet }}', Obj()), "hi you hi me")

    def test_method_error(self) -> None:
        """A method that fails stops execution with ``error calling``."""
        with self.assertRaises(ExecError) as caught:
            run("x{{ .Fail }}", Obj())
        self.assertEqual(str(caught.exception), 'template: t:1:4: executing "t" at <.Fail>: error calling Fail: boom')

    def test_unknown_field(self) -> None:
        """A field an object lacks names the type."""
        self.assertRaisesRegex(ExecError, r"can't evaluate field Nope in type main.Obj", run, "{{ .Nope }}", Obj())

    def test_unexported_names(self) -> None:
        """Lower-case names are not fields of objects (Python's own attributes stay hidden)."""
        self.assertRaisesRegex(ExecError, r"can't evaluate field __class__ in type main.Obj", run, "{{ .__class__ }}", Obj())
        self.assertRaisesRegex(ExecError, r"can't evaluate field name in type main.Obj", run, "{{ .name }}", Obj())

    def test_nil_pointer(self) -> None:
        """A field of nil is Go's nil pointer error."""
        self.assertRaisesRegex(ExecError, r"nil pointer evaluating interface \{\}.b", run, "{{ .a.b }}", {"a": None})

    def test_variables(self) -> None:
        """Declaration, assignment, scoping to the block, ``$`` as the data."""
        text = "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}{{ range list 1 }}{{ $x = 5 }}{{ end }}{{ $x }}{{ $.k }}"
        self.assertEqual(run(text, {"k": "K"}), "215K")

    def test_assign_undefined(self) -> None:
        """Assigning a variable never declared fails when executed."""
        self.assertRaisesRegex(ExecError, r"undefined variable: \$y", run, "{{ $y = 1 }}")

    def test_if_else_chain(self) -> None:
        """``if``/``else if``/``else`` with Go's truth."""
        text = "{{ if .a }}A{{ else if .b }}B{{ else }}C{{ end }}"
        self.assertEqual([run(text, d) for d in ({"a": 1}, {"a": 0, "b": [1]}, {"a": "", "b": {}})], ["A", "B", "C"])

    def test_truth(self) -> None:
        """False, 0, nil, empty string/list/map and a missing value are false; objects true."""
        falsy: list[Any] = [False, 0, 0.0, None, "", [], {}, NO_VALUE]
        self.assertEqual([is_true(v) for v in falsy], [False] * 8)
        self.assertEqual([is_true(v) for v in (True, 1, "x", [0], {"": 0}, Obj())], [True] * 6)

    def test_range(self) -> None:
        """Lists with index and element, maps in key order, ``else`` when empty."""
        self.assertEqual(run("{{ range $i, $v := . }}{{ $i }}{{ $v }}{{ end }}", ["a", "b"]), "0a1b")
        self.assertEqual(run("{{ range $k, $v := . }}{{ $k }}{{ $v }}{{ end }}", {"b": 2, "a": 1}), "a1b2")
        self.assertEqual(run("{{ range $v := . }}{{ $v }}{{ end }}", {"b": 2, "a": 1}), "12")
        self.assertEqual(run("{{ range . }}x{{ else }}empty{{ end }}", []), "empty")

    def test_range_break_continue(self) -> None:
        """``break`` and ``continue`` inside ``range``."""
        text = "{{ range . }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ if eq . 4 }}{{ break }}{{ end }}{{ . }}{{ end }}"
        self.assertEqual(run(text, [1, 2, 3, 4, 5]), "13")

    def test_range_over_scalar(self) -> None:
        """Go 1.19 cannot range over an integer or a string."""
        self.assertRaisesRegex(ExecError, "range can't iterate over 5", run, "{{ range 5 }}{{ end }}")

    def test_with(self) -> None:
        """``with`` sets the dot when true; ``else`` otherwise."""
        self.assertEqual(run("{{ with .a }}{{ . }}{{ else }}none{{ end }}|{{ with .b }}x{{ else }}none{{ end }}", {"a": "A"}), "A|none")

    def test_define_template_block(self) -> None:
        """``define`` and ``template`` with a pipeline; ``block`` defines and runs; ``$`` is the argument."""
        text = '{{ define "d" }}[{{ . }}{{ $ }}]{{ end }}{{ template "d" 1 }}{{ template "d" }}{{ block "b" 2 }}<{{ . }}>{{ end }}'
        self.assertEqual(run(text), "[11][<no value><no value>]<2>")

    def test_template_not_defined(self) -> None:
        """Calling an unknown template."""
        self.assertRaisesRegex(ExecError, r'at <\{\{template "x"\}\}>: template "x" not defined', run, '{{ template "x" }}')

    def test_parse_adds_and_replaces(self) -> None:
        """A later ``parse`` (Caddy's ``import``) adds and replaces definitions, keeps a non-empty body."""
        tpl = Template("main")
        tpl.parse('{{ define "a" }}old{{ end }}body:{{ template "a" }}')
        tpl.parse('{{ define "a" }}new{{ end }}')
        self.assertEqual(tpl.execute(None), "body:new")

    def test_pipelines_and_parens(self) -> None:
        """Values pass down a pipeline as the last argument; parentheses nest, fields chain."""
        self.assertEqual(run('{{ "a,b" | splitList "," | join "+" }} {{ (dict "k" "v").k }} {{ print (len "xy") }}'), "a+b v 2")

    def test_function_errors(self) -> None:
        """Argument counts and errors name the function and the command, with line and column."""
        with self.assertRaises(ExecError) as caught:
            run("a\n  {{ index .L 5 }}", {"L": [1]})
        self.assertEqual(str(caught.exception), 'template: t:2:5: executing "t" at <index .L 5>: error calling index: index out of range: 5')
        self.assertRaisesRegex(ExecError, r"at <upper>: wrong number of args for upper: want 1 got 2", run, '{{ upper "a" "b" }}')

    def test_typed_parameters(self) -> None:
        """A constant or value of the wrong type for a typed parameter."""
        self.assertRaisesRegex(ExecError, r"at <5>: expected string; found 5", run, "{{ upper 5 }}")
        self.assertRaisesRegex(ExecError, r"wrong type for value; expected string; got int", run, "{{ upper .n }}", {"n": 1})

    def test_non_function(self) -> None:
        """Arguments to a constant, and ``nil`` as a command."""
        self.assertRaisesRegex(ExecError, 'can\'t give argument to non-function "x"', run, '{{ "x" 1 }}')
        self.assertRaisesRegex(ExecError, "nil is not a command", run, "{{ nil }}")

    def test_deep_recursion(self) -> None:
        """A template calling itself stops with an error instead of exhausting the stack."""
        self.assertRaisesRegex(ExecError, "exceeded maximum template depth", run, '{{ define "r" }}{{ template "r" }}{{ end }}{{ template "r" }}')

    def test_no_escaping(self) -> None:
        """text/template writes values as they are."""
        self.assertEqual(run("{{ . }}", "<b>&"), "<b>&")


class BuiltinTests(SynchronousTestCase):
    """Go's predefined functions."""

    def test_and_or_not(self) -> None:
        """``and``/``or`` return the deciding argument; ``not`` negates truth."""
        self.assertEqual(run('{{ and 1 "a" }} {{ and 1 0 "x" }} {{ or 0 "" "y" }} {{ or 0 "" }} {{ not "" }}'), "a 0 y  true")

    def test_comparisons(self) -> None:
        """``eq`` with several operands, ordering, and Go's type errors."""
        self.assertEqual(run('{{ eq 1 2 1 }} {{ ne "a" "b" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1 3 }}'), "true true true true true false")
        self.assertRaisesRegex(ExecError, "incompatible types for comparison", run, '{{ eq 1 "1" }}')
        self.assertRaisesRegex(ExecError, "incompatible types for comparison", run, "{{ lt 1 2.5 }}")
        self.assertRaisesRegex(ExecError, "invalid type for comparison", run, "{{ lt true false }}")

    def test_len_index_slice(self) -> None:
        """``len`` counts bytes of strings; ``index`` maps and lists; ``slice`` lists and strings."""
        self.assertEqual(run('{{ len "héllo" }} {{ index .m "k" }} {{ index .l 1 }} {{ index .m "z" }} {{ slice .l 1 }}',
                             {"m": {"k": "v"}, "l": [1, 2, 3]}), "6 v 2 <no value> [2 3]")
        self.assertRaisesRegex(ExecError, "reflect: slice index out of range", run, "{{ index .l 3 }}", {"l": [1, 2, 3]})

    def test_print_family(self) -> None:
        """``print`` spaces operands when neither is a string; ``println`` always."""
        self.assertEqual(run('{{ print 1 2 "x" 3 "y" }}|{{ println "a" 1 }}|'), "1 2x3y|a 1\n|")

    def test_printf_verbs(self) -> None:
        """Go's verbs, flags, widths and the bad-operand forms."""
        out = run('{{ printf "%5d|%-5s|%05.2f|%x|%X|%q|%v|%t|%o|%b|%c|%e|%g|%T|%%" 42 "ab" 3.14159 255 "hi" "q" (list 1 "a") true 8 5 65 1234.5678 0.000001 "s" }}')
        self.assertEqual(out, '   42|ab   |03.14|ff|6869|"q"|[1 a]|true|10|101|A|1.234568e+03|1e-06|string|%')
        self.assertEqual(run('{{ printf "%d %s" "str" 5 }} {{ printf "%d" }} {{ printf "x" 1 }}'),
                         "%!d(string=str) %!s(int=5) %!d(MISSING) x%!(EXTRA int=1)")

    def test_escapers(self) -> None:
        """``html``, ``js`` and ``urlquery`` as Go 1.19 escapes."""
        self.assertEqual(run('{{ html "<a href=\\"x\\">&\'" }}'), "&lt;a href=&#34;x&#34;&gt;&amp;&#39;")
        self.assertEqual(run('{{ js "it\'s <b> =" }}'), "it\\'s \\u003Cb\\u003E \\u003D")
        self.assertEqual(run('{{ urlquery "a b&c" }}'), "a+b%26c")

    def test_call(self) -> None:
        """``call`` runs a function value."""
        self.assertEqual(run("{{ call .f 2 }}", {"f": lambda x: x * 3}), "6")

    def test_float_printing(self) -> None:
        """Floats print in Go's shortest ``%v`` form."""
        self.assertEqual(run("{{ 3.0 }} {{ 1e21 }} {{ 123456789.0 }} {{ 0.1 }} {{ 1.5e-7 }}"), "3 1e+21 1.23456789e+08 0.1 1.5e-07")

    def test_funcs_override_builtins(self) -> None:
        """Added functions take precedence over built-ins, as in Go (Sprig's ``slice``)."""
        self.assertEqual(run("{{ len 1 }}", len=lambda x: "mine"), "mine")


class TemplateSetTests(SynchronousTestCase):
    """The set of named templates across several parses."""

    def test_empty_definition_keeps_the_old(self) -> None:
        """A later empty ``define`` does not replace a template, as Go's ``associate``."""
        tpl = Template("m").parse('{{ define "a" }}A{{ end }}{{ template "a" }}')
        tpl.parse('{{ define "a" }} {{ end }}')
        self.assertEqual(tpl.execute(None), "A")

    def test_execute_by_name(self) -> None:
        """Any template of the set runs by name; an unknown one is Go's error."""
        tpl = Template("m").parse('{{ define "a" }}<{{ . }}>{{ end }}main')
        self.assertEqual(tpl.execute(3, "a"), "<3>")
        self.assertRaisesRegex(ExecError, 'no template "zz" associated with template "m"', tpl.execute, None, "zz")
