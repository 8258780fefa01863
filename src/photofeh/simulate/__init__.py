"""The mock Milky Way survey: a catalogue with known truth for every later stage."""

from photofeh.simulate.survey import MockSurvey, MockSurveyConfig, iter_chunks, simulate

__all__ = ["MockSurvey", "MockSurveyConfig", "iter_chunks", "simulate"]
