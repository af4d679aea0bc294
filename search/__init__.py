"""How to FIND a network: data, proxy training, the Optuna study and its workers."""
