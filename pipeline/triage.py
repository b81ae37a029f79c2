"""Category and severity of a case from its findings."""

from __future__ import annotations

from pipeline.types import Finding, Severity

# Area (m²) and longest-dimension (m) thresholds a crew would call medium/high. Potholes: a
# 0.1 m² hole swallows a bicycle wheel; 0.5 m² or 1 m long needs a truck, not a shovel.
THRESHOLDS: dict[str, tuple[float, float, float]] = {
    # class: (medium area m², high area m², high length m)
    "pothole": (0.1, 0.5, 1.0),
    "graffiti": (1.0, 5.0, 4.0),
}


def severity(finding: Finding | None) -> Severity | None:
    """low/medium/high from the finding's metric size; None when it has no metric size."""
    if finding is None or finding.measurement.area_m2 is None:
        return None
    medium, high, high_len = THRESHOLDS.get(finding.class_name, (1.0, 5.0, 4.0))
    area = finding.measurement.area_m2
    length = finding.measurement.length_m or 0.0
    if area >= high or length >= high_len:
        return "high"
    if area >= medium:
        return "medium"
    return "low"


def main_finding(findings: list[Finding], category_class: str | None) -> Finding | None:
    """The finding the case is about: the most confident of the chosen class, else overall."""
    pool = [f for f in findings if category_class and f.class_name == category_class] or findings
    return max(pool, key=lambda f: f.confidence, default=None)
