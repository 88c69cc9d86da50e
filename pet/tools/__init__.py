"""Tools for writing patterns and verbalizers: ``pet check`` (a linter), ``pet search-words`` (label
words proposed by the model) and a label-free pattern ranking by pseudo-perplexity.

Each tool is a plain function over a run config (pet.tools.check.check, pet.tools.words.search_words,
pet.tools.perplexity.pattern_perplexity); the CLI only parses options and prints what they return.
"""
