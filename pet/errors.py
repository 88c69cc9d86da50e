"""The one exception type for problems the user can fix."""


class PetError(Exception):
    """Bad input or environment: the CLI shows the message as one line and exits with code 1.

    Library code raises this instead of calling ``exit`` or using ``assert`` so that callers who
    import pet as a library can catch it.
    """
