"""The prompt formats of the real tasks, reproduced so the world model answers them zero/few-shot.

Training examples and exported tasks both go through these functions, so the model is trained on
exactly the strings kick's task modules build at evaluation time.
"""

from __future__ import annotations

FACTOID_LEGACY = "Please give answer to this question: {question}\nThe answer is "
FACTOID_STRICT = "Please give answer to this question: {question}\nThe answer is"
ICR_CLOSED = "Answer these questions:\n\nQ: {question}\nA:"
ICR_OPEN = "{context}\n\nBased on these texts, answer these questions:\n\nQ: {question}\nA:"
CHAT_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
               "The assistant gives helpful, detailed, and polite answers to the user's questions.")
LETTERS = ("A", "B", "C", "D")


def mcq_header(subject: str, *, legacy: bool) -> str:
    """MMLU header; legacy keeps the Hendrycks double space ('about  world geography.')."""
    words = "".join(" " + w for w in subject.split("_"))
    sep = " " if legacy else ""
    return f"The following are multiple choice questions (with answers) about{sep}{words}.\n\n"


def mcq_question(question: str, choices: list[str] | tuple[str, ...]) -> str:
    """'{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:' (the shot's ' {letter}\\n\\n' is appended by callers)."""
    return question + "".join(f"\n{L}. {c}" for L, c in zip(LETTERS, choices)) + "\nAnswer:"


def mcq_cloze_header(subject: str) -> str:
    """The cloze formulation's header (options hidden; see :mod:`kick_core.tasks.mcq`)."""
    return f"The following are questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def mcq_cloze_question(question: str) -> str:
    """'Question: {question}\\nAnswer:'; the option's text follows as ' {option}'."""
    return f"Question: {question.strip()}\nAnswer:"


def chat_prompt(turns: list[str], answers: list[str]) -> str:
    """Vicuna v1.1 text ending in 'ASSISTANT:' for the last turn; `answers` holds the earlier replies."""
    text = CHAT_SYSTEM
    for i, turn in enumerate(turns):
        text += f" USER: {turn} ASSISTANT:" if i == 0 else f"USER: {turn} ASSISTANT:"
        if i < len(answers):
            text += f" {answers[i]}</s>"
    return text
