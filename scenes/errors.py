"""The one exception type for bad user input, shared by every nvsc package."""


class InvalidInputError(ValueError):
    """Input that nvsc cannot use: the message names the file or parameter, what is wrong and how to fix it.

    Raised before anything is written, so a run that fails on it leaves every earlier result in place.
    """

    def __init__(self, what: str, problem: str, fix: str):
        self.what, self.problem, self.fix = str(what), problem, fix
        super().__init__(f"{what}: {problem}. Fix: {fix}")
