"""Reports: the build report's markdown and core picture (:mod:`.build`) and plots (:mod:`.plots`)."""
