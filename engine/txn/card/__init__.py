"""Card and e-card authentication on the transaction core (DESIGN.md §4): 9301 card
challenge (`challenge`, INFNO 9301) and 1101 person info by social security card, e-card
or ID number (`person_info`, INFNO 1101). The HSM calls between their load and their
decision are in `proofs`, the services they need in `services`; the decisions
themselves are settlement.cards'."""
