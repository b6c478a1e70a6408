"""What measures: options, the case matrix, the run, its workers and launcher, clock, memory, server load, roofline."""
