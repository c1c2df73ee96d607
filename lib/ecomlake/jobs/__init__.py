"""Job bodies: each module has run(spark, config, ...) and main(argv); jobs/<name>.py calls main."""
