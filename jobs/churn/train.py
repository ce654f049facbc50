"""The generic trainer: any feature table with a 0/1 label column -> a validated Spark ML pipeline.

`train_model` is used by the weekly churn training and, unchanged, on public data (the UCI Bank
Marketing check in `jobs.churn.bank_marketing`). It trains every configured algorithm (gradient-boosted
trees, logistic regression) on the training rows, keeps the best on the validation rows by the
configured metric, and returns the model with everything scoring needs (`ScoringProfile`): the class
weight to undo (prior correction) and the per-feature statistics behind the reason codes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import BooleanType, NumericType, StringType

from jobs.churn.settings import ChurnSettings, TrainingSettings

# Columns the pipeline adds; the double underscore keeps them apart from feature-table columns.
LABEL = "model__label"
WEIGHT = "model__weight"
VECTOR = "model__features"
RAW = "model__raw"
WEIGHTED_PROBABILITY = "model__weighted_probability"
PREDICTION = "model__prediction"
PROBABILITY = "model__probability"
INDEX_SUFFIX, ONE_HOT_SUFFIX, FILLED_SUFFIX = "__index", "__is", "__filled"


@dataclass(frozen=True)
class Validation:
    """Which rows validate: those with the latest value of a column (time split) or a seeded share."""

    column: str | None = None
    fraction: float | None = None
    seed: int = 0
    hashed: tuple[str, ...] | None = None

    @classmethod
    def latest(cls, column: str) -> Validation:
        return cls(column=column)

    @classmethod
    def random(cls, fraction: float, seed: int, hashed: list[str] | None = None) -> Validation:
        """A share of the rows chosen by a seeded hash of the `hashed` columns (default: all columns)."""
        return cls(fraction=fraction, seed=seed, hashed=tuple(hashed) if hashed else None)

    def split(self, frame: DataFrame) -> tuple[DataFrame, DataFrame]:
        if self.column is not None:
            latest = frame.agg(F.max(self.column)).first()[0]
            return frame.where(F.col(self.column) < latest), frame.where(F.col(self.column) == latest)
        # A hash of the row's values, not rand(): the same rows validate however Spark partitions them.
        share = (F.abs(F.xxhash64(*(self.hashed or frame.columns), F.lit(self.seed))) % 1_000_000) / 1_000_000.0
        return frame.where(share >= self.fraction), frame.where(share < self.fraction)

    def describe(self) -> str:
        if self.column is not None:
            return f"latest {self.column}"
        return f"random {self.fraction:.0%} (seed {self.seed})"


@dataclass(frozen=True)
class FeatureSlot:
    """One slot of the assembled feature vector, with what the reason codes need to know about it."""

    index: int
    column: str
    code_high: str | None   # reason code when the value is above the training mean
    code_low: str | None    # … below it (None: being below says nothing, e.g. not in a category)
    mean: float
    std: float
    weight: float           # signed; weight * (x - mean) / std is the slot's push towards the label


@dataclass(frozen=True)
class ScoringProfile:
    """What turns the pipeline's output into a calibrated probability and reason codes."""

    label_col: str
    feature_cols: list[str]
    positive_weight: float
    slots: list[FeatureSlot]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringProfile:
        return cls(label_col=data["label_col"], feature_cols=list(data["feature_cols"]),
                   positive_weight=float(data["positive_weight"]),
                   slots=[FeatureSlot(**slot) for slot in data["slots"]])


@dataclass
class TrainResult:
    model: PipelineModel
    algorithm: str
    metrics: dict[str, float]                      # the kept model on the validation rows
    candidates: dict[str, dict[str, float]]        # every algorithm on the validation rows
    params: dict[str, Any]
    feature_importances: list[tuple[str, float]]   # by assembled slot name, largest first
    profile: ScoringProfile
    validation_rows: DataFrame = field(repr=False)  # persisted; the promotion compares on these
    train_count: int = 0
    validation_count: int = 0


# ---------------------------------------------------------------- feature selection

def feature_columns(frame: DataFrame, label_col: str, training: TrainingSettings) -> list[str]:
    """Every numeric or boolean column except the excluded ones and the label, plus the configured
    categorical columns the frame has."""
    excluded = set(training.excluded_columns) | {label_col}
    numeric = [f.name for f in frame.schema.fields
               if isinstance(f.dataType, (NumericType, BooleanType)) and f.name not in excluded]
    return numeric + [c for c in training.categorical_columns if c in frame.columns]


# ---------------------------------------------------------------- the pipeline

def _pipeline(frame: DataFrame, feature_cols: list[str], algorithm: str,
              training: TrainingSettings) -> Pipeline:
    types = dict((f.name, f.dataType) for f in frame.schema.fields)
    categorical = [c for c in feature_cols if isinstance(types[c], StringType)]
    numeric = [c for c in feature_cols if c not in categorical]
    stages: list[Any] = []
    if categorical:
        # Unseen and null values share one extra bucket, so tomorrow's new region does not fail scoring.
        stages.append(StringIndexer(inputCols=categorical, outputCols=[c + INDEX_SUFFIX for c in categorical],
                                    handleInvalid="keep", stringOrderType="frequencyDesc"))
        stages.append(OneHotEncoder(inputCols=[c + INDEX_SUFFIX for c in categorical],
                                    outputCols=[c + ONE_HOT_SUFFIX for c in categorical],
                                    handleInvalid="keep"))
    if numeric:
        stages.append(Imputer(inputCols=numeric, outputCols=[c + FILLED_SUFFIX for c in numeric],
                              strategy="median"))
    stages.append(VectorAssembler(inputCols=[c + FILLED_SUFFIX for c in numeric]
                                  + [c + ONE_HOT_SUFFIX for c in categorical], outputCol=VECTOR))
    columns = dict(featuresCol=VECTOR, labelCol=LABEL, weightCol=WEIGHT, predictionCol=PREDICTION)
    if algorithm == "gbt":
        gbt = training.gbt
        classifier = GBTClassifier(maxIter=gbt.max_iter, maxDepth=gbt.max_depth, stepSize=gbt.step_size,
                                   subsamplingRate=gbt.subsampling_rate,
                                   minInstancesPerNode=gbt.min_instances_per_node, seed=gbt.seed, **columns)
    else:
        lr = training.logistic
        classifier = LogisticRegression(regParam=lr.reg_param, elasticNetParam=lr.elastic_net_param,
                                        maxIter=lr.max_iter, standardization=True, **columns)
    stages.append(classifier.setRawPredictionCol(RAW).setProbabilityCol(WEIGHTED_PROBABILITY))
    return Pipeline(stages=stages)


def _prepared(frame: DataFrame, label_col: str, feature_cols: list[str], positive_weight: float) -> DataFrame:
    casts = [F.col(c).cast("int").alias(c) if isinstance(frame.schema[c].dataType, BooleanType) else F.col(c)
             for c in feature_cols]
    rest = [c for c in frame.columns if c not in feature_cols]
    label = F.col(label_col).cast("double")
    return (frame.select(*rest, *casts)
            .withColumn(LABEL, label)
            .withColumn(WEIGHT, F.when(label == 1.0, F.lit(positive_weight)).otherwise(F.lit(1.0))))


def predict(model: PipelineModel, profile: ScoringProfile, frame: DataFrame) -> DataFrame:
    """`frame` with the pipeline's columns and PROBABILITY, the calibrated probability of label 1.

    With class weights w on the positives the model estimates odds multiplied by w; dividing them back
    out (prior correction) gives p = p_w / (p_w + w (1 - p_w)).
    """
    casts = [F.col(c).cast("int").alias(c) if isinstance(frame.schema[c].dataType, BooleanType) else F.col(c)
             for c in profile.feature_cols]
    rest = [c for c in frame.columns if c not in profile.feature_cols]
    scored = model.transform(frame.select(*rest, *casts))
    weighted = vector_to_array(F.col(WEIGHTED_PROBABILITY))[1]
    w = F.lit(profile.positive_weight)
    return scored.withColumn(PROBABILITY, weighted / (weighted + w * (F.lit(1.0) - weighted)))


# ---------------------------------------------------------------- metrics

def evaluate(scored: DataFrame, label_col: str, probability_col: str, top_fraction: float) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score, lift and capture in the top `top_fraction` by probability, and the
    lift of each score decile (`lift_decile_1` = the riskiest tenth; the report's lift chart).

    Ties at the top-share and decile boundaries are broken towards label 0, so lifts never flatter.
    """
    rows = scored.select(F.col(label_col).cast("double").alias("y"),
                         F.col(probability_col).cast("double").alias("p"))
    counts = rows.agg(F.count("*").alias("n"), F.sum("y").alias("positives"),
                      F.avg((F.col("p") - F.col("y")) ** 2).alias("brier")).first()
    n, positives = counts["n"], counts["positives"] or 0.0
    if n == 0 or positives in (0, n):
        raise ValueError(f"cannot evaluate on {n} rows with {positives:.0f} positives: both classes needed")
    evaluator = BinaryClassificationEvaluator(rawPredictionCol="p", labelCol="y", numBins=0)
    roc_auc = evaluator.setMetricName("areaUnderROC").evaluate(rows)
    pr_auc = evaluator.setMetricName("areaUnderPR").evaluate(rows)
    top_n = max(1, math.ceil(n * top_fraction))
    # One pass over the ranking: per decile (positives, rows, positives within the top share).
    by_decile = (rows.orderBy(F.col("p").desc(), F.col("y").asc()).rdd.zipWithIndex()
                 .map(lambda pair: (pair[1] * 10 // n + 1,
                                    (pair[0]["y"], 1, pair[0]["y"] if pair[1] < top_n else 0.0)))
                 .reduceByKey(lambda a, b: (a[0] + b[0], a[1] + b[1], a[2] + b[2])).collectAsMap())
    top_positives = sum(top for _, _, top in by_decile.values())
    base_rate = positives / n
    return {"roc_auc": roc_auc, "pr_auc": pr_auc, "brier": counts["brier"],
            "top_lift": (top_positives / top_n) / base_rate, "top_capture": top_positives / positives,
            "base_rate": base_rate, "rows": float(n),
            **{f"lift_decile_{d}": (hits / size) / base_rate for d, (hits, size, _) in sorted(by_decile.items())}}


# ---------------------------------------------------------------- explanation

def _slot_names(scored: DataFrame) -> dict[int, str]:
    attrs = scored.schema[VECTOR].metadata["ml_attr"]["attrs"]
    return {a["idx"]: a["name"] for group in attrs.values() for a in group}


def _slot_codes(name: str, categorical: list[str]) -> tuple[str, str | None, str | None]:
    for column in categorical:
        prefix = column + ONE_HOT_SUFFIX + "_"  # the assembler names one-hot slots <column>_<value>
        if name.startswith(prefix):
            return column, f"{column}={name[len(prefix):]}", None
    column = name.removesuffix(FILLED_SUFFIX)
    return column, f"{column}:high", f"{column}:low"


def _importances_and_weights(model: PipelineModel, algorithm: str, size: int, stds: list[float],
                             class_means: dict[float, list[float]]) -> tuple[list[float], list[float]]:
    """Slot importances (sum 1) and signed reason weights.

    Logistic: weight = coefficient x std, so weight x z is the slot's exact contribution to the log-odds
    against an average customer. Trees: weight = importance x sign(mean of positives - mean of
    negatives), i.e. the deviation from the average weighted by importance, in the direction that
    raises the probability.
    """
    classifier = model.stages[-1]
    if algorithm == "logistic":
        weights = [c * s for c, s in zip(classifier.coefficients.toArray(), stds, strict=True)]
        total = sum(abs(w) for w in weights) or 1.0
        return [abs(w) / total for w in weights], weights
    importances = list(classifier.featureImportances.toArray())
    directions = [math.copysign(1.0, class_means[1.0][i] - class_means[0.0][i]) for i in range(size)]
    return importances, [imp * d for imp, d in zip(importances, directions, strict=True)]


def _profile(model: PipelineModel, algorithm: str, train: DataFrame, label_col: str,
             feature_cols: list[str], categorical: list[str],
             positive_weight: float) -> tuple[ScoringProfile, list[tuple[str, float]]]:
    assembled = PipelineModel(model.stages[:-1]).transform(train)
    names = _slot_names(assembled)
    overall = assembled.select(Summarizer.metrics("mean", "std").summary(F.col(VECTOR)).alias("s")).first()["s"]
    by_class = {row[LABEL]: list(row["m"].toArray()) for row in
                assembled.groupBy(LABEL).agg(Summarizer.mean(F.col(VECTOR)).alias("m")).collect()}
    means, stds = list(overall["mean"].toArray()), list(overall["std"].toArray())
    importances, weights = _importances_and_weights(model, algorithm, len(names), stds, by_class)
    slots = []
    for index in sorted(names):
        if stds[index] <= 0.0:
            continue  # a constant slot explains nothing
        column, high, low = _slot_codes(names[index], categorical)
        slots.append(FeatureSlot(index=index, column=column, code_high=high, code_low=low,
                                 mean=means[index], std=stds[index], weight=weights[index]))
    ranked = sorted(((names[i].removesuffix(FILLED_SUFFIX), importances[i]) for i in names),
                    key=lambda pair: -pair[1])
    return ScoringProfile(label_col, list(feature_cols), positive_weight, slots), ranked


def reason_codes(scored: DataFrame, profile: ScoringProfile, count: int) -> Column:
    """The `count` slots pushing this row's probability up the most, as reason codes (array<string>).

    Each slot contributes weight x (x - mean) / std; only positive contributions are reasons.
    """
    values = vector_to_array(F.col(VECTOR))
    candidates = []
    for slot in profile.slots:
        z = (values[slot.index] - F.lit(slot.mean)) / F.lit(slot.std)
        code = F.when(z > 0, F.lit(slot.code_high)).when(z < 0, F.lit(slot.code_low))
        candidates.append(F.struct((F.lit(slot.weight) * z).alias("push"), code.alias("code")))
    if not candidates:
        return F.array().cast("array<string>")
    pushing = F.filter(F.array(*candidates), lambda c: (c["push"] > 0) & c["code"].isNotNull())
    return F.transform(F.slice(F.sort_array(pushing, asc=False), 1, count), lambda c: c["code"])


# ---------------------------------------------------------------- the trainer

def _class_counts(frame: DataFrame) -> tuple[int, int]:
    row = frame.agg(F.count("*").alias("n"), F.sum(LABEL).alias("p")).first()
    return int(row["n"] - (row["p"] or 0)), int(row["p"] or 0)


def train_model(feature_table: DataFrame, label_col: str, feature_cols: list[str],
                settings: ChurnSettings, validation: Validation) -> TrainResult:
    """Train and validate a binary classifier on any feature table with a 0/1 `label_col`.

    String feature columns are indexed and one-hot encoded, numeric and boolean ones median-imputed.
    Every algorithm of `settings.training.algorithms` is fitted on the training rows (positives weighted
    n_negative / n_positive when `balance_classes`) and scored on the validation rows; the one with the
    best `selection_metric` is returned. Raises ValueError when a class is too small to learn from.
    """
    training = settings.training
    missing = [c for c in [label_col, *feature_cols] if c not in feature_table.columns]
    if missing:
        raise ValueError(f"feature table lacks columns: {', '.join(missing)}")
    bad_labels = feature_table.where(F.col(label_col).isNull()
                                     | ~F.col(label_col).cast("double").isin(0.0, 1.0)).limit(1).count()
    if bad_labels:
        raise ValueError(f"label column {label_col!r} must hold only 0 and 1")

    # Boosting runs several jobs per tree: a small table spread over many partitions (a union of
    # cut-offs) would make each of them schedule many tiny tasks. One partition per core is enough.
    parallelism = feature_table.sparkSession.sparkContext.defaultParallelism
    prepared = _prepared(feature_table, label_col, feature_cols, 1.0).coalesce(parallelism)
    train_raw, valid_raw = validation.split(prepared)
    train_raw, valid_raw = train_raw.persist(), valid_raw.persist()
    counts = {"training": _class_counts(train_raw), "validation": _class_counts(valid_raw)}
    for part, (negatives, positives) in counts.items():
        if min(negatives, positives) < training.min_class_rows:
            train_raw.unpersist()
            valid_raw.unpersist()
            raise ValueError(f"{part} rows ({validation.describe()}) hold {positives} positives and "
                             f"{negatives} negatives; at least {training.min_class_rows} of each needed")
    # A column without any value in training cannot be imputed nor learned from (e.g. an optional
    # source never delivered): leave it out and say so in the params.
    filled = train_raw.agg(*[F.count(c).alias(c) for c in feature_cols]).first()
    empty = [c for c in feature_cols if filled[c] == 0]
    feature_cols = [c for c in feature_cols if c not in empty]
    negatives, positives = counts["training"]
    positive_weight = negatives / positives if training.balance_classes else 1.0
    train = train_raw.withColumn(WEIGHT, F.when(F.col(LABEL) == 1.0, F.lit(positive_weight))
                                 .otherwise(F.lit(1.0))).persist()
    train_raw.unpersist()

    categorical = [c for c in feature_cols if isinstance(feature_table.schema[c].dataType, StringType)]
    fitted: dict[str, tuple[PipelineModel, ScoringProfile, list[tuple[str, float]]]] = {}
    candidates: dict[str, dict[str, float]] = {}
    for algorithm in training.algorithms:
        model = _pipeline(train, feature_cols, algorithm, training).fit(train)
        profile, importances = _profile(model, algorithm, train, label_col, feature_cols, categorical,
                                        positive_weight)
        candidates[algorithm] = evaluate(predict(model, profile, valid_raw), LABEL, PROBABILITY,
                                         training.top_fraction)
        fitted[algorithm] = (model, profile, importances)
    best = max(candidates, key=lambda a: candidates[a][training.selection_metric])
    model, profile, importances = fitted[best]
    train.unpersist()
    params = {"algorithm": best, "label_col": label_col, "validation": validation.describe(),
              "positive_weight": positive_weight, "feature_count": len(feature_cols),
              "features_without_values": ",".join(empty) or "none",
              "selection_metric": training.selection_metric,
              **{f"{best}.{k}": v for k, v in getattr(training, best).model_dump().items()}}
    return TrainResult(model=model, algorithm=best, metrics=candidates[best], candidates=candidates,
                       params=params, feature_importances=importances, profile=profile,
                       validation_rows=valid_raw.drop(LABEL, WEIGHT),
                       train_count=negatives + positives, validation_count=sum(counts["validation"]))
