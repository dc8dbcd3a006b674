"""Who may use threadbox and how much: access, daily budgets, usage and prices.

Consulted by the listeners and the turn before anything reaches the model.
"""
