"""Fixed program: elimination. Ask which option is most clearly wrong, drop it, and repeat on
the options left until two remain (at most 6 rounds, so ten options fit the default budget of
8 calls); then the solver chooses among those left."""


def _listing(options):
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())


def solve(item, solver):
    background = (item.context + "\n") if item.context else ""
    left = dict(item.options)
    for _ in range(min(len(left) - 2, 6)):
        wrong = solver.choose(f"{background}Question: {item.question}\n{_listing(left)}\n"
                              "Which one of these options is most clearly wrong? Answer with "
                              "its letter.")
        if wrong not in left:
            break
        del left[wrong]
    return solver.choose(f"{background}Question: {item.question}\n{_listing(left)}\n"
                         "Which one of these options is correct? Answer with its letter.")
