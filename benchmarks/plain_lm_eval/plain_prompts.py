"""doc_to_text of the plain lm-eval task: exactly the prompt cgr's direct channel sends."""

from cgr_plugin.data.items import MCQAItem
from cgr_plugin.prompts import render


def direct_prompt(doc: dict) -> str:
    return render("direct.j2", [], item=MCQAItem.from_doc(doc), style="letter")
