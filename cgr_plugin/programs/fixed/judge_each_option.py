"""Fixed program: one yes/no judgement per option, then the most probable (the sketch that the
per_option generator prompt shows; what every generated program copied in 0.1)."""


def solve(item, solver):
    background = (item.context + "\n") if item.context else ""
    scores = {}
    for letter, text in item.options.items():
        claim = (f"{background}Question: {item.question}\nProposed answer: {text}\n"
                 "Is the proposed answer correct?")
        scores[letter] = solver.judge(claim)
    return solver.pick(scores)
