# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Man pages from the markdown of docs/NAME.SECTION.md.

    python3 docs/mkman.py -o DIR docs/vupy.1.md ...

writes DIR/man1/vupy.1 and so on (DIR laid out as share/man), and for every
further name in a page's NAME section (`vumount`, `vuumount` -- ...) a page
that sources the first (DIR/man1/vuumount.1: `.so man1/vumount.1`).  It
prints the paths written.

It reads the subset of markdown these pages use, and refuses anything else
with the line it cannot read:

    # HEADING, ## SUBHEADING      .SH, .SS
    paragraphs                    .PP
    `code`, *italic*              bold, italic (`msocket`(2): bold, then "(2)")
    TERM / : DEFINITION           .TP; the definition's further lines, and
                                  its further blocks, indented by two spaces
    * ITEM (or - ITEM)            .IP with a bullet, continued the same way
    indented or ``` code blocks   .EX, indented
    | a | b | tables              a definition per row, the first cell the
                                  term (two columns only; the header row is
                                  left out, as a man page's lists have none)

The first paragraph of NAME becomes the whatis line (`vupy \\- ...`).  The
version in .TH is vupy.__version__, read from vupy/__init__.py.
"""
import argparse
import ast
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = re.compile(r"^(?P<name>[\w-]+)\.(?P<section>[1-8])\.md$")
INLINE = re.compile(r"`([^`]+)`|\*([^*\s][^*]*)\*")
MANUALS = {"1": "User Commands", "2": "System Calls"}


class MarkdownError(Exception):
    pass


def version():
    """vupy.__version__, from the source (no import: vupy need not be importable)."""
    with open(os.path.join(HERE, os.pardir, "vupy", "__init__.py")) as f:
        for node in ast.parse(f.read()).body:
            if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__version__"]:
                return ast.literal_eval(node.value)
    raise MarkdownError("no __version__ in vupy/__init__.py")


# Inline text ---------------------------------------------------------------

def escape(text, literal=False):
    """`text` for troff: backslashes, non-ASCII characters and, in literal
    text (code), hyphens as minus signs, so that options can be copied; in
    other text a place to break the line before each `[` (for long
    synopses of options)."""
    out = []
    for c in text:
        if c == "\\":
            out.append("\\e")
        elif c == "-" and literal:
            out.append("\\-")
        elif c == "[" and not literal:
            out.append("\\:[")
        elif ord(c) > 126:
            out.append(f"\\[u{ord(c):04X}]")
        else:
            out.append(c)
    return "".join(out)


def inline(text):
    """Markdown text as troff: `code` bold, *text* italic."""
    out, end = [], 0
    for m in INLINE.finditer(text):
        out.append(escape(text[end:m.start()]))
        if m.group(1) is not None:
            starts_word = m.start() == 0 or text[m.start() - 1].isspace()
            out.append(f"\\fB{unhyphenated(m.group(1), starts_word)}\\fR")
        else:
            out.append(f"\\fI{escape(m.group(2))}\\fR")
        end = m.end()
    out.append(escape(text[end:]))
    return "".join(out)


def unhyphenated(code, starts_word):
    """Code (text to type) for troff, its words never hyphenated: \\% before
    each, except before the first if it does not start a word (inside a
    word \\% is a place to hyphenate)."""
    return re.sub(r"(^|\s)(?=\S)", lambda w: w.group(1) + ("\\%" if w.group(1) or starts_word else ""),
                  escape(code, literal=True))


def plain(text):
    """A line of markdown without its markup (for NAME)."""
    return INLINE.sub(lambda m: m.group(1) or m.group(2), text)


def lines_out(lines):
    """Text lines that troff must not take for requests."""
    return "".join(("\\&" + line if line[:1] in (".", "'") else line) + "\n" for line in lines)


def text_out(lines):
    """Lines of markdown text (a paragraph, whose code spans may go on from
    one line to the next) as troff text lines."""
    return lines_out(inline("\n".join(lines)).split("\n"))


# Blocks ----------------------------------------------------------------------

def indented(lines, i, width):
    """The lines from i on that belong to a block whose continuation is
    indented by `width` (blank lines included when more such lines follow),
    dedented; and the index after them."""
    body = []
    while i < len(lines):
        if lines[i].strip():
            if not lines[i].startswith(" " * width):
                break
            body.append(lines[i][width:])
        else:
            j = i
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j == len(lines) or not lines[j].startswith(" " * width):
                break
            body.append("")
        i += 1
    return body, i


def blocks(lines, where):
    """The blocks of `lines`: (kind, data) tuples."""
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level, _, title = line.partition(" ")
            if level not in ("#", "##") or not title:
                raise MarkdownError(f"{where}: a heading must be '# TITLE' or '## TITLE': {line!r}")
            out.append(("heading", (len(level), title)))
            i += 1
        elif line.startswith("```"):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise MarkdownError(f"{where}: a code block is not closed: {line!r}")
            out.append(("code", lines[i + 1:end]))
            i = end + 1
        elif line.startswith("    "):
            code, i = indented(lines, i, 4)
            out.append(("code", code))
        elif line[:2] in ("* ", "- "):
            body, i = indented(lines, i + 1, 2)
            out.append(("item", blocks([line[2:]] + body, where)))
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if len(cells) != 2:
                    raise MarkdownError(f"{where}: only tables of two columns: {lines[i]!r}")
                rows.append(cells)
                i += 1
            if len(rows) < 2 or set(rows[1][0] + rows[1][1]) - set("-:"):
                raise MarkdownError(f"{where}: a table needs a header and a |---| line: {line!r}")
            out += [("definition", (tag, [("paragraph", [text])])) for tag, text in rows[2:]]
        elif _is_term(lines, i):
            first = lines[i + 1][2:]
            body, i = indented(lines, i + 2, 2)
            out.append(("definition", (line, blocks([first] + body, where))))
        else:
            start = i
            i += 1
            while i < len(lines) and lines[i].strip() and not _starts_block(lines, i):
                i += 1
            out.append(("paragraph", [line.strip() for line in lines[start:i]]))
    return out


def _is_term(lines, i):
    return i + 1 < len(lines) and lines[i + 1].startswith(": ")


def _starts_block(lines, i):
    """Whether line i, inside a paragraph, begins another block instead."""
    return lines[i].startswith(("#", "```", "* ", "- ", "|")) or _is_term(lines, i)


# Rendering -----------------------------------------------------------------

def render(items):
    """troff for blocks at one level (the page, or a list item's body)."""
    out = []
    for kind, data in items:
        if kind == "heading":
            level, title = data
            out.append(f".{'SH' if level == 1 else 'SS'} \"{escape(title)}\"\n")
        elif kind == "paragraph":
            out.append(".PP\n" + text_out(data))
        elif kind == "code":
            out.append(".PP\n.RS 4\n.EX\n" + lines_out(escape(line, literal=True) for line in data)
                       + ".EE\n.RE\n")
        elif kind == "item":
            out.append(".IP \\(bu 2\n" + body(data))
        elif kind == "definition":
            term, content = data
            # A term of options may be one long word: not to be stretched when broken.
            out.append(".TP\n.na\n" + text_out([term]) + ".ad\n" + body(content))
    return "".join(out)


def body(content):
    """The body of a list item or a definition, after its tag: its first
    paragraph at the tag's indentation, the rest in an indented block."""
    first = ""
    if content and content[0][0] == "paragraph":
        first = text_out(content[0][1])
        content = content[1:]
    return first + (".RS\n" + render(content) + ".RE\n" if content else "")


def page(markdown, name, section, source="page"):
    """The man page for `markdown`; and the other names of its NAME section."""
    items = blocks(markdown.splitlines(), source)
    if items[:1] != [("heading", (1, "NAME"))] or len(items) < 2 or items[1][0] != "paragraph":
        raise MarkdownError(f"{source}: must begin with '# NAME' and a paragraph")
    whatis = " ".join(plain(line) for line in items[1][1])
    names, dash, description = whatis.partition(" -- ")
    names = [n.strip() for n in names.split(",")]
    if not dash or name not in names:
        raise MarkdownError(f"{source}: NAME must read '{name}[, ...] -- what it is'")
    head = (f".TH {name.upper()} {section} \"\" \"vupy {version()}\" "
            f"\"{MANUALS.get(section, 'vupy')}\"\n")
    text = (head + ".SH NAME\n" + lines_out([f"{escape(', '.join(names))} \\- {escape(description)}"])
            + render(items[2:]))
    return text, [n for n in names if n != name]


def pages(sources):
    """{path below a man directory: text}: the man page of each
    docs/NAME.SECTION.md in `sources` (manSECTION/NAME.SECTION), and a
    `.so` page for each of its other names."""
    out = {}
    for source in sources:
        m = PAGE.match(os.path.basename(source))
        if not m:
            raise MarkdownError(f"{source}: not named NAME.SECTION.md")
        name, section = m.group("name"), m.group("section")
        with open(source) as f:
            text, aliases = page(f.read(), name, section, source)
        out[f"man{section}/{name}.{section}"] = text
        out.update({f"man{section}/{alias}.{section}": f".so man{section}/{name}.{section}\n"
                    for alias in aliases})
    return out


def write_pages(sources, directory):
    """Write `pages(sources)` into `directory`; return the paths written."""
    written = []
    for name, text in pages(sources).items():
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mkman.py", description="man pages from docs/*.N.md")
    parser.add_argument("-o", dest="directory", required=True, help="where to write the pages")
    parser.add_argument("sources", nargs="+", metavar="NAME.SECTION.md")
    args = parser.parse_args(argv)
    try:
        for path in write_pages(args.sources, args.directory):
            print(path)
    except (MarkdownError, OSError) as e:
        print(f"mkman.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
