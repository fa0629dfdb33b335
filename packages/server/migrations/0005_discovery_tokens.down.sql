-- data-loss: the published discovery tokens (accounts publish them again after the upgrade)
DROP TABLE "discovery_tokens";
