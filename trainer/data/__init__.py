"""The data path of the RL engine.

Sample schema, readers and writers, splits, source mixture, prompt pool, images, synthetic data.
"""
