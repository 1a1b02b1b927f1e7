"""`python -m recipes` is the `recipe` command."""

from recipes.cli import main

main()
