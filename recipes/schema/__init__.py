"""The recipe schema, split by domain; `Recipe` is the whole document."""

from recipes.schema.recipe import BudgetSpec, Recipe

__all__ = ["BudgetSpec", "Recipe"]
