class UserError(ValueError):
    """A fault the user can fix (bad file, key or value); its message is one line naming it and the fix."""
