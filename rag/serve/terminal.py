"""`rag chat`: a conversation in the terminal. The model and index load once; a question may follow
up on the ones before it; each answer's citations are printed under it; a few commands show a
citation's passage with the quote marked, or save the conversation."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rag.config import Settings
from rag.errors import RagError
from rag.serve import export

HELP = """Commands:
  /show N      the passage around citation N of the last answer, the quote marked
  /save FILE   save the conversation: FILE.md as Markdown, FILE.json as JSON
  /new         start over: later questions do not follow up on earlier ones
  /help        this list
  /quit        leave (Ctrl-D works too)"""
HISTORY_FILE = Path("~/.rag_history")
"""Where readline keeps the questions typed, across sessions (only when the input is a terminal)."""


class Conversation:
    """The questions asked so far and their answers, as `rag ask --json` objects and Answer records."""

    def __init__(self, settings: Settings, retriever, scope=None):
        self.settings, self.retriever, self.scope = settings, retriever, scope
        self.answers: list[dict] = []
        self.last = None
        self.follows_from = 0  # answers before this index are not followed up on (after /new)

    def ask(self, question: str):
        """Answer `question`, joined to the earlier ones when it follows up on them."""
        from rag.answer.quotes import answer

        earlier = [a["question"] for a in self.answers[self.follows_from :]]
        self.last = answer(question, self.retriever, self.settings, history=earlier, scope=self.scope)
        self.answers.append(self.last.to_dict())
        return self.last

    def passage_of(self, n: int, marks: tuple[str, str]) -> str:
        """The passage around citation `n` of the last answer, its quote between `marks`."""
        citations = self.last.citations if self.last else ()
        citation = next((c for c in citations if c.n == n), None)
        if citation is None:
            return f"no citation [{n}] in the last answer" if citations else "no citations yet: ask a question first"
        passage = self.last.passages.get(citation.key)
        if passage is None:
            return f"{marks[0]}{citation.quote}{marks[1]}"
        a, b = citation.start - passage.start, citation.end - passage.start
        heading = f"[{n}] {export.where(citation.to_dict())}, passage {passage.id}"
        return f"{heading}\n{passage.text[:a]}{marks[0]}{passage.text[a:b]}{marks[1]}{passage.text[b:]}"

    def save(self, name: str) -> str:
        """Write the conversation to `name` (.json as JSON, anything else as Markdown); says where."""
        path = Path(name).expanduser()
        text = export.as_json(self.answers) if path.suffix.lower() == ".json" else export.as_markdown(self.answers)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            return f"could not save to {path} ({error.strerror or error}); give another file name"
        return f"saved {export.plural(len(self.answers), 'answer', 'answers')} to {path}"


def chat(
    settings: Settings, read: Callable[[str], str] = input, out: TextIO = sys.stdout, retriever=None, scope=None
) -> int:
    """Run the conversation until /quit or end of input; returns the exit code. `retriever` may be a list, one
    per collection; `scope` narrows every question to folders or files."""
    from rag.search import Retriever

    retrievers = list(retriever) if isinstance(retriever, list | tuple) else [retriever or Retriever(settings)]
    _ = retrievers[0].embedder  # load the model now, not at the first question
    conversation = Conversation(settings, retrievers, scope)
    marks = ("\033[1;4m", "\033[0m") if out.isatty() else ("»", "«")
    history = _start_history() if sys.stdin.isatty() else None
    files = sum(len(r.index.manifest.files) for r in retrievers)
    passages = sum(r.index.manifest.passages for r in retrievers)
    where = ", ".join(r.collection for r in retrievers if r.collection) or str(settings.corpus)
    print(
        f"rag chat: {export.plural(files, 'file', 'files')}, "
        f"{export.plural(passages, 'passage', 'passages')} in {where}. "
        f"Ask a question; /help lists the commands.",
        file=out,
    )
    try:
        while True:
            try:
                line = read("? ").strip()
            except EOFError:
                break
            if not line:
                continue
            if line.startswith("/"):
                reply = _command(line, conversation, marks)
                if reply is None:
                    break
                print(reply, file=out)
                continue
            try:
                result = conversation.ask(line)
            except RagError as error:
                print(f"rag: error: {error}", file=out)
                continue
            print(export.as_text(conversation.answers[-1]), file=out)
            if result.searched_for and result.searched_for != " ".join(line.split()):
                print(f"(searched for: {result.searched_for})", file=out)
            print(file=out)
    except KeyboardInterrupt:
        print(file=out)
    finally:
        if history:
            history()
    return 0


def _command(line: str, conversation: Conversation, marks: tuple[str, str]) -> str | None:
    """The reply to one /command, or None to leave."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit", "/q"):
        return None
    if name == "/help":
        return HELP
    if name == "/new":
        conversation.follows_from = len(conversation.answers)
        return "new conversation: the next question stands on its own"
    if name == "/show":
        if not argument.lstrip("[").rstrip("]").isdigit():
            return "say which citation: /show 1"
        return conversation.passage_of(int(argument.lstrip("[").rstrip("]")), marks)
    if name == "/save":
        return conversation.save(argument) if argument else "say where: /save conversation.md"
    return f"unknown command {name}; /help lists the commands"


def _start_history():
    """Load readline's history of earlier questions; returns the function that saves it again."""
    try:
        import readline
    except ImportError:  # not every Python has it
        return None
    path = HISTORY_FILE.expanduser()
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)

    def save() -> None:
        try:
            readline.write_history_file(path)
        except OSError:
            pass

    return save
