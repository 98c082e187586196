#!/usr/bin/env python3
"""Writes the golden outputs that tests/unit/test_chat.c and test_jinja.c compare against.

Each template in tests/data/templates/ is rendered with Python's jinja2, set up the way
Hugging Face's apply_chat_template sets it up (ImmutableSandboxedEnvironment with
trim_blocks, lstrip_blocks and loopcontrols; raise_exception and strftime_now globals;
HF's tojson filter), over a fixed set of conversations, with and without
add_generation_prompt. The interpreter unit cases (small templates with JSON contexts,
and the family templates with tools) go to a second file.

Usage: python3 tests/unit/gen_chat_goldens.py   (from the repository root)

File format (both files): after '#' comment lines, records of the form
    KEY SP LENGTH LF BYTES LF
where LENGTH is the byte count of BYTES ('-' with no bytes means None). Keys:
  chat_goldens.txt:  T template file, B bos_token, E eos_token (apply to the cases that
                     follow), C case name, G add_generation_prompt ("0"/"1"),
                     R role, M content (one R+M pair per message),
                     then O output | X raise_exception message | Y other error
  jinja_cases.txt:   C case name, T template text, J JSON context, then O | X | Y
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
TEMPLATES = os.path.join(DATA, "templates")
SMOLLM = os.path.expanduser("~/.cache/libllm/models/SmolLM2-135M-Instruct.Q4_1.gguf")
# strftime_now() is pinned to this time (UTC) here and in the C tests
FIXED_TIME = 1721952000  # 2024-07-26 00:00:00 UTC


def hf_environment():
    """The environment of transformers' chat template rendering."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent,
                          separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.fromtimestamp(FIXED_TIME, datetime.timezone.utc).strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


ENV = hf_environment()


def render(template_text, **ctx):
    """('O', text) or ('X', raise_exception message) or ('Y', 'Type: message')."""
    try:
        return "O", ENV.from_string(template_text).render(**ctx)
    except jinja2.exceptions.TemplateError as e:
        if type(e) is jinja2.exceptions.TemplateError:
            return "X", str(e)
        return "Y", "%s: %s" % (type(e).__name__, e)
    except Exception as e:  # TypeError, ZeroDivisionError, ... raised by Python itself
        return "Y", "%s: %s" % (type(e).__name__, e)


class Writer:
    def __init__(self, path, header):
        self.f = open(path, "wb")
        for line in header:
            self.f.write(b"# " + line.encode() + b"\n")
        self.n = 0

    def rec(self, key, value):
        if value is None:
            self.f.write(key.encode() + b" -\n")
            return
        data = value.encode("utf-8") if isinstance(value, str) else value
        self.f.write(b"%s %d\n" % (key.encode(), len(data)) + data + b"\n")

    def close(self):
        self.f.close()


# ---- conversations ------------------------------------------------------------------

def conversations():
    S, U, A = "system", "user", "assistant"
    long_text = " ".join("word%d" % i for i in range(400))
    convs = [
        ("user_only", [(U, "Hello!")]),
        ("system_user", [(S, "You are a helpful assistant."), (U, "What is 2+2?")]),
        ("system_user_assistant", [(S, "Be brief."), (U, "Hi"), (A, "Hello.")]),
        ("two_turns", [(U, "Hi"), (A, "Hello! How can I help?"), (U, "Tell me a joke.")]),
        ("three_turns_system", [(S, "You are a pirate."), (U, "Hi"), (A, "Arr!"),
                                (U, "Where is the treasure?"), (A, "Buried, matey."),
                                (U, "Thanks")]),
        ("ends_with_assistant", [(U, "Q1"), (A, "A1"), (U, "Q2"), (A, "A2")]),
        ("empty_user", [(U, "")]),
        ("empty_system", [(S, ""), (U, "Hi")]),
        ("empty_assistant", [(U, "Hi"), (A, ""), (U, "again")]),
        ("unicode", [(U, "Grüße aus Köln! 你好，世界 🙂 — ∑ x² ≠ y³ ñ")]),
        ("unicode_system", [(S, "Réponds en français. Ελληνικά. Русский."),
                            (U, "Привет, как дела?")]),
        ("quotes", [(U, "He said \"hi\" and 'bye' and `code`")]),
        ("braces", [(U, "Template-like {{ not a tag }} {% if x %} {# c #} {{- x -}}")]),
        ("json_content", [(U, '{"name": "x", "args": [1, 2, {"k": null}]}')]),
        ("backslashes", [(U, "C:\\path\\to\\file and \\n literal and \\u00e9")]),
        ("whitespace_padding", [(U, "   padded both sides   "), (A, "\n\nlines around\n\n"),
                                (U, "\tTab\t")]),
        ("newlines", [(U, "line1\nline2\r\nline3\n\n\nline6")]),
        ("only_whitespace", [(U, " \n\t ")]),
        ("special_tokens_text", [(U, "<|im_start|>system\n<|im_end|> <s> </s> [INST] "
                                     "<start_of_turn> <|eot_id|>")]),
        ("long", [(S, "Summarise."), (U, long_text)]),
        ("assistant_first", [(A, "I speak first."), (U, "OK")]),
        ("user_user", [(U, "one"), (U, "two")]),
        ("two_systems", [(S, "First system."), (S, "Second system."), (U, "Hi")]),
        ("system_only", [(S, "Just a system prompt.")]),
        ("system_in_middle", [(U, "Hi"), (A, "Hello"), (S, "Be formal now."), (U, "OK")]),
        ("tool_role", [(U, "What's the weather?"), (A, "Let me check."),
                       ("tool", "{\"temp\": 21}"), (U, "Thanks")]),
        ("custom_role", [("narrator", "Once upon a time."), (U, "Go on.")]),
        ("think_tags", [(U, "Solve 1+1"), (A, "<think>\nIt is 2.\n</think>\n\nThe answer is 2."),
                        (U, "And 2+2?")]),
        ("tool_response_text", [(U, "<tool_response>\n42\n</tool_response>")]),
        ("emoji_and_combining", [(U, "e\u0301 \u200b zero-width \ufeff bom \U0001F468\u200d\U0001F469")]),
        ("percent_and_hash", [(U, "100% sure # not a comment %} #}")]),
        ("many_turns", [(S, "sys")] + [(U if i % 2 == 0 else A, "turn %d" % i) for i in range(20)]),
        ("no_messages", []),
    ]
    return convs


# bos/eos as each family's tokenizer defines them (None: the tokenizer has none)
FAMILIES = {
    "smollm2.jinja": ("<|im_start|>", "<|im_end|>"),
    "gemma3.jinja": ("<bos>", "<eos>"),
    "gemma2.jinja": ("<bos>", "<eos>"),
    "chatml.jinja": (None, "<|im_end|>"),
    "qwen2.5.jinja": (None, "<|im_end|>"),
    "qwen3.jinja": (None, "<|im_end|>"),
    "llama3.1.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama2.jinja": ("<s>", "</s>"),
    "mistral.jinja": ("<s>", "</s>"),
    "mistral-v3.jinja": ("<s>", "</s>"),
    "phi3.jinja": ("<s>", "<|endoftext|>"),
    "deepseek-r1.jinja": ("<\uff5cbegin\u2581of\u2581sentence\uff5c>",
                          "<\uff5cend\u2581of\u2581sentence\uff5c>"),
    "zephyr.jinja": ("<s>", "</s>"),
    "command-r.jinja": ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    "kitchen-sink.jinja": ("<BOS>", "<EOS>"),
}


def smollm2_template():
    """Copies the template out of the SmolLM2 GGUF (the model we ship for)."""
    path = os.path.join(TEMPLATES, "smollm2.jinja")
    if os.path.exists(SMOLLM):
        try:
            from gguf import GGUFReader
            r = GGUFReader(SMOLLM)
            f = r.fields["tokenizer.chat_template"]
            text = bytes(f.parts[f.data[0]]).decode("utf-8")
            with open(path, "w", encoding="utf-8") as out:
                out.write(text)
        except ImportError:
            pass
    if not os.path.exists(path):
        sys.exit("no %s and no GGUF to read it from" % path)


def write_chat_goldens():
    smollm2_template()
    w = Writer(os.path.join(DATA, "chat_goldens.txt"), [
        "Chat template goldens for tests/unit/test_chat.c; generated by "
        "tests/unit/gen_chat_goldens.py.",
        "Rendered by jinja2 %s as transformers' apply_chat_template configures it "
        "(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols)." %
        jinja2.__version__,
        "strftime_now() is pinned to %d (UTC)." % FIXED_TIME,
    ])
    counts = {}
    for name in sorted(FAMILIES):
        bos, eos = FAMILIES[name]
        with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
            text = f.read()
        w.rec("T", name)
        w.rec("B", bos)
        w.rec("E", eos)
        for cname, msgs in conversations():
            for agp in (False, True):
                ctx = {"messages": [{"role": r, "content": c} for r, c in msgs],
                       "add_generation_prompt": agp, "tools": None, "documents": None}
                if bos is not None:
                    ctx["bos_token"] = bos
                if eos is not None:
                    ctx["eos_token"] = eos
                kind, out = render(text, **ctx)
                w.rec("C", "%s/%s%s" % (name, cname, "+gen" if agp else ""))
                w.rec("G", "1" if agp else "0")
                for r, c in msgs:
                    w.rec("R", r)
                    w.rec("M", c)
                w.rec(kind, out)
                counts[kind] = counts.get(kind, 0) + 1
    w.close()
    return counts


# ---- interpreter unit cases -----------------------------------------------------------

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather for a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "search", "description": "Search the web — über fast.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}},
]
TOOL_CONV = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call12345", "type": "function",
         "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}]},
    {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21.5}"},
    {"role": "assistant", "content": "It is 21.5 °C in Paris."},
    {"role": "user", "content": "Thanks!"},
]


def unit_cases():
    """(name, template, context) triples: expressions, filters, tests, loops, whitespace
    control and errors, each checked against jinja2."""
    C = []

    def add(t, ctx=None, name=None):
        C.append((name or t[:60], t, ctx or {}))

    x = {"s": "Hello World", "n": 7, "f": 2.5, "l": [3, 1, 2], "d": {"b": 1, "a": 2},
         "e": "", "none": None, "t": True, "u8": "héllo wörld ñ 你好",
         "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                  {"role": "user", "content": "bye", "extra": 1}]}
    # literals and printing
    for t in ["{{ 1 }}|{{ -1 }}|{{ 1.0 }}|{{ 1.5e3 }}|{{ 1e20 }}|{{ 1e-7 }}|{{ 0.1 + 0.2 }}",
              "{{ 1_000 }}|{{ 0x1F }}|{{ 0o17 }}|{{ 0b101 }}|{{ 007.5 }}",
              "{{ true }}{{ True }}{{ false }}{{ none }}{{ None }}",
              "{{ 'a' 'b' \"c\" }}", "{{ 'it\\'s' }}|{{ \"q\\\"q\" }}|{{ 'tab\\tnl\\nx' }}",
              "{{ '\\x41\\u00e9\\U0001F600\\101\\d' }}", "{{ [1, 'a', none, true, 2.5] }}",
              "{{ {'a': 1, 'b': [1, {'c': none}]} }}", "{{ (1, 2) }}{{ (1,) }}{{ () }}",
              "{{ ['it\\'s', 'say \"x\"', 'both \\' \"', '\\n\\t\\x01\\x7f'] }}",
              "{{ [1.0, -0.0, 1e16, 1e15, 123456789.123, 1e-4, 1e-5] }}",
              "{{ 1, 2 }}", "{{ [] }}{{ {} }}", "{{ ['héllo', '\u00a0'] }}"]:
        add(t)
    # arithmetic and operators
    for t in ["{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 7 / 2 }} {{ 4 / 2 }}",
              "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2 ** 0.5 }} {{ 2 ** 3 ** 2 }}",
              "{{ -7.5 // 2 }} {{ 7.5 % -2 }} {{ 5.0 // 0.3 }} {{ -0.0 }}",
              "{{ 1 + 2 * 3 - 4 / 2 }}", "{{ (1 + 2) * 3 }}", "{{ 'ab' * 3 }}{{ 3 * 'x' }}{{ [1] * 3 }}",
              "{{ 'a' ~ 1 ~ none ~ true ~ 2.0 }}", "{{ 'a' + 'b' }}", "{{ [1] + [2, 3] }}",
              "{{ true + 1 }}", "{{ 1 + 'a' }}", "{{ 1 / 0 }}", "{{ 1 // 0 }}",
              "{{ -n }} {{ +n }} {{ - -n }}", "{{ n * f }}", "{{ 10 - 3 - 2 }}",
              "{{ 'a' < 'b' }}{{ 'B' < 'a' }}{{ [1, 2] < [1, 3] }}{{ (1, 2) >= (1, 2) }}",
              "{{ 1 < 2 < 3 }}{{ 3 > 2 > 2 }}{{ 1 == 1.0 }}{{ true == 1 }}{{ (1, 2) == [1, 2] }}",
              "{{ 1 < 'a' }}", "{{ none < 1 }}", "{{ 'a' in 'cat' }}{{ 'z' not in 'cat' }}",
              "{{ 2 in l }}{{ 5 in l }}{{ 'a' in d }}{{ 'z' in d }}{{ 1 in d }}",
              "{{ 1 in 'abc' }}", "{{ not 1 }}{{ not '' }}{{ not none }}",
              "{{ 0 or 'x' }}|{{ 'a' or 'b' }}|{{ 0 and 'x' }}|{{ 1 and 'y' }}|{{ none or [] }}",
              "{{ 'yes' if t else 'no' }}|{{ 'yes' if e else 'no' }}|{{ 'v' if false }}|",
              "{{ 1 if 0 else 2 if 0 else 3 }}", "{{ not t and e }}{{ not (t and e) }}",
              "{{ l[0] }}{{ l[-1] }}{{ l[5] }}|{{ s[0] }}{{ s[-1] }}{{ u8[1] }}{{ u8[-1] }}",
              "{{ l[1:] }}{{ l[:-1] }}{{ l[::-1] }}{{ l[::2] }}{{ l[5:] }}{{ l[-2:] }}",
              "{{ s[::-1] }}|{{ u8[1:4] }}|{{ u8[::-2] }}|{{ s[3:1:-1] }}", "{{ l[::0] }}",
              "{{ d.a }}{{ d['b'] }}{{ d.z }}|{{ d.z is defined }}{{ d['z'] is defined }}",
              "{{ msgs[0].role }}{{ msgs[1]['content'] }}{{ msgs.0.role }}{{ msgs[2].extra }}",
              "{{ d.items is defined }}{{ s.upper is defined }}{{ s.nosuch is defined }}", "{{ x.y }}", "{{ x['y'] }}", "{{ x.y is defined }}",
              "{{ none.x }}|{{ n.x }}|{{ none[0] }}", "{{ d.get('a') }}{{ d.get('z') }}{{ d.get('z', 5) }}",
              "{{ 1 if x is undefined else 0 }}", "{{ x }}|{{ x ~ 'a' }}|{{ x | length }}",
              "{{ x + 1 }}", "{{ x < 1 }}", "{{ x == x }}{{ x == none }}{{ x != 1 }}",
              "{% for i in x %}{{ i }}{% else %}empty{% endfor %}",
              "{{ e is string }}{{ n is number }}{{ f is number }}{{ t is number }}{{ n is integer }}{{ f is float }}{{ t is integer }}",
              "{{ d is mapping }}{{ l is mapping }}{{ l is sequence }}{{ s is sequence }}{{ d is iterable }}{{ n is iterable }}{{ x is iterable }}",
              "{{ t is boolean }}{{ n is boolean }}{{ t is true }}{{ 1 is true }}{{ false is false }}{{ none is none }}{{ x is none }}",
              "{{ n is odd }}{{ n is even }}{{ 9 is divisibleby 3 }}{{ 9 is divisibleby(4) }}",
              "{{ n is eq 7 }}{{ n is equalto(7) }}{{ n is ne 7 }}{{ n is lt 8 }}{{ n is gt 8 }}{{ n is ge 7 }}{{ n is le 6 }}",
              "{{ 'a' is in 'abc' }}{{ 2 is in l }}{{ s is lower }}{{ 'abc' is lower }}{{ 'ABC' is upper }}",
              "{{ d is callable }}{{ range is callable }}{{ none is sameas none }}{{ t is sameas true }}",
              "{{ s is not string }}{{ x is not defined }}{{ not x is defined }}",
              "{{ 'upper' is filter }}{{ 'nope' is filter }}{{ 'odd' is test }}",
              "{{ n is nosuchtest }}", "{% if false %}{{ n is nosuchtest }}{% endif %}ok"]:
        add(t, x)
    # filters
    for t in ["{{ '  x y  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ s | upper }}|{{ s | lower }}",
              "{{ u8 | upper }}|{{ u8 | title }}|{{ u8 | capitalize }}|{{ 'ÀÉÎ' | lower }}",
              "{{ 'hello world-foo bar(baz' | title }}|{{ \"they're\" | title }}|{{ 'aBC dEF' | capitalize }}",
              "{{ s | length }}{{ u8 | length }}{{ l | length }}{{ d | count }}{{ x | length }}",
              "{{ n | length }}", "{{ l | first }}{{ l | last }}{{ s | first }}{{ d | first }}{{ [] | first }}",
              "{{ l | join }}|{{ l | join(', ') }}|{{ msgs | join('/', attribute='role') }}|{{ s | join('-') }}",
              "{{ l | sort }}{{ l | sort(reverse=true) }}{{ ['b', 'A', 'a', 'C'] | sort }}{{ ['b', 'A', 'a', 'C'] | sort(case_sensitive=true) }}",
              "{{ msgs | sort(attribute='content') | map(attribute='content') | list }}",
              "{{ l | reverse | list }}{{ s | reverse }}{{ l | list }}{{ s | list }}{{ d | list }}",
              "{{ d | items | list }}{{ d | dictsort }}{{ d | dictsort(reverse=true) }}{{ d | dictsort(by='value') }}",
              "{{ x | items | list }}", "{{ l | items | list }}",
              "{{ msgs | map(attribute='role') | list }}{{ msgs | map(attribute='extra', default='-') | list }}",
              "{{ ['a', 'b'] | map('upper') | list }}{{ [' a ', 'b '] | map('trim') | join('|') }}",
              "{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }}",
              "{{ msgs | rejectattr('role', 'eq', 'user') | list | length }}{{ msgs | selectattr('extra') | list | length }}",
              "{{ msgs | selectattr('extra', 'defined') | list | length }}{{ msgs | selectattr('extra', 'undefined') | list | length }}",
              "{{ [1, 2, 3, 4] | select('odd') | list }}{{ [1, 2, 3, 4] | reject('odd') | list }}{{ [0, 1, '', 'a'] | select | list }}",
              "{{ [1, 5, 3] | select('gt', 2) | list }}{{ ['a', 'b'] | select('in', 'abc') | list }}",
              "{{ l | max }}{{ l | min }}{{ ['b', 'A'] | max }}{{ msgs | max(attribute='content') }}{{ [] | max }}",
              "{{ l | sum }}{{ [1.5, 2] | sum }}{{ msgs | sum(attribute='extra', start=10) }}",
              "{{ ['B', 'a', 'A', 'b', 'a'] | unique | list }}{{ ['B', 'b'] | unique(case_sensitive=true) | list }}{{ msgs | unique(attribute='role') | list | length }}",
              "{{ x | default('dflt') }}|{{ none | default('dflt') }}|{{ '' | default('dflt', true) }}|{{ 0 | d(5, boolean=true) }}|{{ x | d }}",
              "{{ '42' | int }}{{ '42.9' | int }}{{ 'x' | int }}{{ 'x' | int(-1) }}{{ 3.99 | int }}{{ true | int }}{{ ' 12 ' | int }}{{ '1_0' | int }}{{ 'ff' | int(base=16) }}",
              "{{ '2.5' | float }}{{ 'x' | float }}{{ 3 | float }}{{ '1e3' | float }}{{ ' -1.5 ' | float }}{{ 'inf' | float }}",
              "{{ -3 | abs }}{{ -2.5 | abs }}{{ (-3) | abs }}", "{{ 'a' | abs }}",
              "{{ 2.5 | round }}{{ 3.5 | round }}{{ 2.675 | round(2) }}{{ 7 | round }}{{ 1.23 | round(1, 'ceil') }}{{ 1.27 | round(1, 'floor') }}{{ -1.5 | round }}",
              "{{ 1234.5678 | round(-2) }}{{ 0.5 | round }}{{ 1.5 | round }}",
              "{{ 'a-b-c' | replace('-', '+') }}{{ 'aaa' | replace('a', 'b', 2) }}{{ 'ab' | replace('', '.') }}{{ 5 | replace(5, 6) }}",
              "{{ n | string }}{{ none | string }}{{ l | string }}{{ t | string | length }}",
              "{{ '<a href=\"x\">&\\'</a>' | e }}|{{ '<b>' | escape }}|{{ '<i>' | safe }}|{{ none | e }}",
              "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb\\n' | indent(1, blank=true) }}|{{ 'x\\ny' | indent('> ') }}",
              "{{ 'one two  three, four-five' | wordcount }}{{ '' | wordcount }}{{ u8 | wordcount }}",
              "{{ 'ab' | center(6) }}|{{ 'abc' | center(6) }}|{{ 'abc' | center(2) }}|",
              "{{ '%s=%d' | format('x', 3) }}|{{ '%5.2f|%-4s|%03d' | format(3.14159, 'a', 7) }}|{{ '%r %%' | format('q') }}",
              "{{ d | attr('a') }}|{{ d | attr('items') is defined }}|{{ s | attr('upper') is defined }}",
              "{{ x | nosuchfilter }}", "{% if false %}{{ x | nosuchfilter }}{% endif %}fine",
              "{{ 'a' if t else x | nosuchfilter }}"]:
        add(t, x)
    # tojson (transformers' version: json.dumps, ensure_ascii off)
    for t in ["{{ d | tojson }}", "{{ msgs | tojson }}", "{{ msgs | tojson(indent=2) }}",
              "{{ {'u': u8, 'q': 'a\"b\\\\c\\n\\t\\x01', 'e': []} | tojson }}",
              "{{ {'u': u8} | tojson(ensure_ascii=true) }}", "{{ {'z': 1, 'a': {'y': 2, 'b': 3}} | tojson(sort_keys=true) }}",
              "{{ l | tojson(separators=(',', ':')) }}", "{{ [1.0, 2.5, 1e20, none, true, -0.0] | tojson }}",
              "{{ {1: 'int key', none: 'n', true: 'b'} | tojson }}", "{{ {'a': {}, 'b': [], 'c': [[]]} | tojson(indent=4) }}",
              "{{ 'x' | tojson }}{{ 5 | tojson }}", "{{ x | tojson }}", "{{ d | tojson(indent='\\t') }}",
              "{{ '\U0001F600 \u2028' | tojson }}{{ '\U0001F600' | tojson(true) }}"]:
        add(t, x)
    # str and dict methods
    for t in ["{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ '  a '.lstrip() }}|{{ ' a  '.rstrip() }}|{{ '\\n\\nx\\n'.strip('\\n') }}",
              "{{ 'a,b,,c'.split(',') }}{{ ' a  b c '.split() }}{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.split(maxsplit=1) }}{{ ''.split() }}{{ ''.split(',') }}",
              "{{ 'a,b,c'.rsplit(',', 1) }}{{ 'a b  c'.rsplit(None, 1) }}",
              "{{ 'x</think>y</think>z'.split('</think>')[-1] }}|{{ 'a\\nb\\r\\nc'.splitlines() }}",
              "{{ s.startswith('Hell') }}{{ s.startswith(('x', 'H')) }}{{ s.endswith('ld') }}{{ s.endswith('x') }}",
              "{{ s.upper() }}{{ s.lower() }}{{ 'hello there'.title() }}{{ \"they're bill's\".title() }}{{ 'hELLO'.capitalize() }}",
              "{{ s.replace('l', 'L') }}{{ s.replace('l', 'L', 1) }}{{ s.find('o') }}{{ s.find('z') }}{{ u8.find('ñ') }}{{ s.rfind('o') }}",
              "{{ s.count('l') }}{{ 'aaaa'.count('aa') }}{{ ', '.join(['a', 'b']) }}{{ ''.join(s | list | reverse) }}",
              "{{ '123'.isdigit() }}{{ '12a'.isdigit() }}{{ 'abc'.isalpha() }}{{ ' \\t'.isspace() }}{{ 'Ab'.isupper() }}{{ 'ab'.islower() }}",
              "{{ 'prefix-x'.removeprefix('prefix-') }}{{ 'x.txt'.removesuffix('.txt') }}",
              "{{ d.keys() | list }}{{ d.values() | list }}{{ d.items() | list }}",
              "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{{ l.count(1) }}{{ l.index(2) }}",
              "{{ l.append(4) }}", "{{ d.update({'c': 3}) }}", "{{ s.format(1) }}", "{{ s.nosuch() }}",
              "{{ '{}-{}|{{}}|{x}'.format(1, 'a', x=none) }}{{ '{1}{0}{1}'.format('a', 'b') }}",
              "{{ '{}{0}'.format(1) }}", "{{ '{2}'.format(1) }}", "{{ '{'.format(1) }}",
              "{{ 'abc'.upper().lower().startswith('a') }}", "{{ ''.join([1, 2]) }}",
              "[{{ '\u3000 x\u00a0\n' | trim }}]{{ 'ééxéé'.strip('é') }}{{ 'aé'.rstrip('é') }}{{ '你好吗'.lstrip('你') }}",
              "{{ u8[0] }}{{ u8[4] }}{{ u8[-2] }}{{ u8[99] is defined }}{{ u8[-99] is defined }}{{ '🙂x'[0] }}{{ '🙂x'[-1] }}",
              "{{ '\u00a0a\u2003b\u3000c'.split() }}{{ 'a\u2028b'.splitlines() }}{{ 'ǅungla'.upper() }}{{ 'ΣΑΣ'.lower() }}",
              "{{ 'groß'.upper() }}|{{ 'İ'.lower() | length }}|{{ 'ﬁ'.upper() }}"]:
        add(t, x)
    # globals
    for t in ["{{ range(5) | list }}{{ range(2, 5) | list }}{{ range(10, 0, -3) | list }}{{ range(0) | list }}",
              "{% for i in range(3) %}{{ i }}{% endfor %}", "{{ range(1, 2, 0) }}", "{{ range(200000) | length }}",
              "{% set ns = namespace(a=1, b='x') %}{% set ns.a = ns.a + 1 %}{{ ns.a }}{{ ns.b }}{{ ns.c }}",
              "{% set ns = namespace() %}{% for i in range(4) %}{% set ns.t = (ns.t or 0) + i %}{% endfor %}{{ ns.t }}",
              "{% set ns = namespace(d) %}{{ ns.a }}{{ ns.b }}", "{{ dict(a=1, b=[2]) }}",
              "{{ raise_exception('Custom failure: ' ~ n) }}", "before{{ raise_exception('stop') }}after",
              "{{ strftime_now('%Y-%m-%d %H:%M %b %d %A') }}", "{{ strftime_now is defined }}{{ nosuchfn is defined }}",
              "{% set x = 5 %}{{ x.y }}", "{{ nosuchfn(1) }}", "{{ s() }}", "{{ d.nosuchmethod() }}"]:
        add(t, x)
    # statements, scoping, loops
    for t in ["{% for i in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}",
              "{% for i in l %}{{ loop.previtem }}>{{ i }}>{{ loop.nextitem }}|{% endfor %}",
              "{% for i in l %}{{ loop.cycle('a', 'b') }}{% endfor %}",
              "{% for i in l if i > 1 %}{{ i }}{{ loop.index }}/{{ loop.length }} {% endfor %}",
              "{% for i in [] %}x{% else %}none{% endfor %}", "{% for i in l if i > 10 %}x{% else %}filtered{% endfor %}",
              "{% for c in 'héy' %}[{{ c }}]{% endfor %}", "{% for k in d %}{{ k }}{% endfor %}",
              "{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }}{% endfor %}", "{% for a, b in [(1, 2, 3)] %}{% endfor %}",
              "{% for i in l %}{% if i == 1 %}{% break %}{% endif %}{{ i }}{% endfor %}",
              "{% for i in l %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
              "{% for i in [1, 2] %}{% for j in [3, 4] %}{{ loop.index }}{{ i }}{{ j }} {% endfor %}{{ loop.index }}|{% endfor %}",
              "{% for m in msgs %}{{ m.role }}{% if not loop.last %}, {% endif %}{% endfor %}",
              "{% set a = 1 %}{% for i in l %}{% set a = a + i %}{{ a }}{% endfor %}|{{ a }}",
              "{% for i in [1, 2] %}{% if i == 2 %}{{ y }}{% endif %}{% set y = i %}{% endfor %}|",
              "{% if t %}{% set z = 3 %}{% endif %}{{ z }}", "{% set a, b = 1, 2 %}{{ a }}{{ b }}",
              "{% set a, b = [1] %}", "{% set l2 = l + [9] %}{{ l2 }}{{ l }}",
              "{% set msgs = msgs[1:] %}{{ msgs | length }}{% for m in msgs %}{{ m.role }}{% endfor %}",
              "{% set blk %}inside {{ n }}{% endset %}[{{ blk }}]", "{% set blk | upper %}shout {{ s }}{% endset %}{{ blk }}",
              "{% if n > 5 %}big{% elif n > 2 %}mid{% else %}small{% endif %}",
              "{% if n > 50 %}big{% elif n > 2 %}mid{% else %}small{% endif %}",
              "{% if n > 50 %}big{% elif n > 20 %}mid{% else %}small{% endif %}",
              "{% if 0 %}a{% elif 0 %}b{% endif %}end",
              "{% macro m(a, b='B', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 2) }}|{{ m(1, c=3) }}|{{ m() }}",
              "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}",
              "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}",
              "{% macro f(k) %}{% if k > 0 %}{{ k }}{{ f(k - 1) }}{% endif %}{% endmacro %}{{ f(5) }}",
              "{% macro f(k) %}{{ f(k + 1) }}{% endmacro %}{{ f(0) }}",
              "{% set g = 'global' %}{% macro m() %}{{ g }}{% endmacro %}{{ m() }}",
              "{% with a = 1, b = n %}{{ a + b }}{% endwith %}{{ a }}",
              "{% filter upper %}abc {{ s }}{% endfilter %}", "{% filter trim | replace('a', 'b') %}  aaa  {% endfilter %}|",
              "{% raw %}{{ not evaluated }} {% if %}{% endraw %}", "a {#- comment -#} b {# keep #} c",
              "{% break %}", "{% for i in l %}{% macro m() %}{% break %}{% endmacro %}{% endfor %}",
              "{% nosuchtag %}", "{% if t %}unclosed", "{% for %}{% endfor %}", "{{ 1 + }}", "{{ (1 }}",
              "{{ 'unterminated }}", "{% endif %}", "{{ 1 ]] }}", "{# unclosed comment", "{{ a b }}",
              "{% if t %}x{% else %}y{% else %}z{% endif %}", "{{ 1 is is defined }}", "{{ @ }}",
              "{% set 1 = 2 %}"]:
        add(t, x)
    # whitespace control, trim_blocks, lstrip_blocks
    for t in ["a\n{% if t %}\nb\n{% endif %}\nc", "a\n  {% if t %}\n  b\n  {% endif %}\nc",
              "a  {% if t %}b{% endif %}  c", "x\n    {{ n }}\n  {% if t %}y{% endif %}",
              "a\n{%- if t -%}\n  b  \n{%- endif -%}\nc", "a\n  {%+ if t %}b{% endif +%}\nc",
              "a\n{{- n -}}\nb", "a {{ n }} \n b", "{% for i in l %}\n  {{ i }}\n{% endfor %}\n",
              "{% for i in l %}\n  {{- i }}\n{% endfor %}", "line\n\t{# comment #}\nnext",
              "x{# c #}\ny", "x {#- c #} y", "{% if t %}  \n  yes\n{% endif %}",
              "a\r\nb\r\n{% if t %}\r\nc\r\n{% endif %}\r\n", "trailing newline\n", "two trailing\n\n",
              "  {% if t %}x{% endif %}", "{{ n }}  {% if t %}x{% endif %}", "a\n {%- if t %} b{% endif %}",
              "{%- if t -%}   x   {%- endif -%}", "{% if t %}x{% endif %}\n\n{% if t %}y{% endif %}\n",
              "{{ '{{' }}{{ '}}' }}{{ '{%' }}", "a {{ {'k': {'n': 1}} }} b", "{{ {'a': 1}['a'] }}}",
              "{% set s2 = '%}' %}{{ s2 }}", "text with { and } and {x} and %}"]:
        add(t, x)
    # the family templates with tool calls and extra variables
    for name in ["qwen2.5.jinja", "qwen3.jinja", "llama3.1.jinja", "llama3.2.jinja",
                 "mistral-v3.jinja", "deepseek-r1.jinja", "smollm2.jinja", "gemma3.jinja",
                 "kitchen-sink.jinja"]:
        with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
            text = f.read()
        base = {"bos_token": "<s>", "eos_token": "</s>", "documents": None}
        add(text, dict(base, messages=TOOL_CONV, tools=TOOLS, add_generation_prompt=True),
            name + "/tools")
        add(text, dict(base, messages=TOOL_CONV[1:2], tools=TOOLS, add_generation_prompt=False,
                       tools_in_user_message=False), name + "/tools-in-system")
        add(text, dict(base, messages=TOOL_CONV[1:2], builtin_tools=["brave_search", "wolfram_alpha"],
                       tools=None, add_generation_prompt=True, date_string="01 Jan 2025"),
            name + "/builtin-tools")
        add(text, dict(base, messages=[{"role": "user", "content": "hi"},
                                       {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nok",
                                        "reasoning_content": "deep"},
                                       {"role": "user", "content": "more"}],
                       tools=None, add_generation_prompt=True, enable_thinking=False),
            name + "/reasoning")
        add(text, dict(base, messages=[{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": "  describe  "}]}],
                       tools=None, add_generation_prompt=True), name + "/content-list")
    return C


def write_jinja_cases():
    w = Writer(os.path.join(DATA, "chat_goldens_jinja.txt"), [
        "Jinja interpreter goldens for tests/unit/test_jinja.c; generated by "
        "tests/unit/gen_chat_goldens.py.",
        "Rendered by jinja2 %s in transformers' chat template environment; contexts are "
        "JSON; strftime_now() is pinned to %d (UTC)." % (jinja2.__version__, FIXED_TIME),
    ])
    counts = {}
    for name, t, ctx in unit_cases():
        kind, out = render(t, **ctx)
        w.rec("C", name)
        w.rec("T", t)
        w.rec("J", json.dumps(ctx, ensure_ascii=False))
        w.rec(kind, out)
        counts[kind] = counts.get(kind, 0) + 1
    w.close()
    return counts


if __name__ == "__main__":
    print("jinja2", jinja2.__version__)
    print("chat goldens:", write_chat_goldens())
    print("jinja cases:", write_jinja_cases())
