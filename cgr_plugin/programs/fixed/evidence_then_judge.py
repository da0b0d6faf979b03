"""Fixed program: gather evidence first, then judge each option against it (the "check with
evidence" strategy of the cgr generator prompt, written once for every item)."""


def solve(item, solver):
    background = (item.context + "\n") if item.context else ""
    evidence = solver.ask(f"{background}{item.question}\n"
                          "State the facts needed to answer this, in two short sentences.")
    scores = {}
    for letter, text in item.options.items():
        claim = (f"Facts: {evidence}\nQuestion: {item.question}\nProposed answer: {text}\n"
                 "Given the facts, is the proposed answer correct?")
        scores[letter] = solver.judge(claim)
    return solver.pick(scores)
