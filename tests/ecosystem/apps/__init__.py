"""The apps the ecosystem suite serves; each module's docstring says what it exercises."""
