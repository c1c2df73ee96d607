"""The deep-model path: Spark prepares data, Petastorm feeds TensorFlow, Horovod distributes training."""
