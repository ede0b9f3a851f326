"""Answers before and after a change, side by side: the same questions asked of the same corpus give the same
citations (file, offsets, marked answer, relevance) or the script names every question that moved.

    .venv/bin/python bench/same_answers.py --corpus seeds --index /tmp/idx --questions q.jsonl --save before.json
    ... change the code, rebuild the index (rag build --full) ...
    .venv/bin/python bench/same_answers.py --corpus seeds --index /tmp/idx --questions q.jsonl --against before.json

Questions are a JSON-lines file with a "text" field (BEIR's queries.jsonl works as it is; --limit takes the first N).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def answers(corpus: Path, index: Path, questions: list[str]) -> list[dict]:
    """Each question's answer, reduced to what a citation promises."""
    from rag.answer.quotes import answer
    from rag.config import Settings
    from rag.search import Retriever

    settings = Settings.from_env(corpus=corpus, index=index)
    retriever = Retriever(settings)
    found = []
    for question in questions:
        result = answer(question, retriever, settings).to_dict()
        found.append(
            {
                "question": question,
                "abstained": result["abstained"],
                "citations": [
                    [c["source"], c["start"], c["end"], c["answer_start"], c["answer_end"], round(c["relevance"], 4)]
                    for c in result["citations"]
                ],
                "nearest": [n["passage_id"] for n in result["nearest"]],
            }
        )
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--questions", type=Path, required=True, help='JSON lines with a "text" field')
    parser.add_argument("--limit", type=int, help="the first N questions")
    parser.add_argument("--save", type=Path, help="write the answers here")
    parser.add_argument("--against", type=Path, help="compare with answers saved before")
    args = parser.parse_args(argv)
    lines = args.questions.read_text(encoding="utf-8").splitlines()
    questions = [json.loads(line)["text"] for line in lines if line.strip()][: args.limit]
    now = answers(args.corpus, args.index, questions)
    if args.save:
        args.save.write_text(json.dumps(now, indent=1, ensure_ascii=False), encoding="utf-8")
    print(
        f"{len(now)} questions, {sum(a['abstained'] for a in now)} declined, {sum(len(a['citations']) for a in now)} citations"
    )
    if args.against:
        before = {a["question"]: a for a in json.loads(args.against.read_text(encoding="utf-8"))}
        moved = [a["question"] for a in now if before.get(a["question"]) != a]
        print(f"same answers: {len(now) - len(moved)} of {len(now)}")
        for question in moved:
            print(f"  moved: {question}")
        return 1 if moved else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
