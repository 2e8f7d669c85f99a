# The Airflow image for these exports: Airflow 3.3.2 (the version the tests ran with) with the Mailchimp
# provider and its pinned runtime dependencies (requirements.txt), the DAG factory and the export
# definitions. .dockerignore keeps the rest of the repository (.venv, var/, tests, benchmarks, .git) out.
#
#   docker build -t mailchimp-segments-airflow .              the deployment image (the default target)
#   docker build --target demo -t mailchimp-segments-demo .   plus the local Mailchimp server and the demo
#                                                             warehouse (docker-compose.yaml's demo profile)
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

FROM ${AIRFLOW_IMAGE} AS airflow
USER root
# Named volumes take the owner of their mount point from the image on first use; group 0 as in
# Airflow's image, so any AIRFLOW_UID can write.
RUN mkdir -p /opt/airflow/project/dags /opt/airflow/project/include /opt/airflow/staging \
    && chown -R airflow:0 /opt/airflow/project /opt/airflow/staging \
    && chmod 2775 /opt/airflow/staging
USER airflow
WORKDIR /opt/airflow/project
COPY --chown=airflow:0 requirements.txt pyproject.toml ./
COPY --chown=airflow:0 plugins/mailchimp_provider ./plugins/mailchimp_provider
# Naming the image's Airflow keeps pip from changing it (Airflow's advice for extending its image).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r requirements.txt
COPY --chown=airflow:0 dags/mailchimp_exports.py ./dags/
COPY --chown=airflow:0 include/exports ./include/exports
ENV AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/project/dags \
    MAILCHIMP_EXPORTS_DIR=/opt/airflow/project/include/exports \
    MAILCHIMP_EXPORT_BASE_PATH=/opt/airflow/staging

# The demo's extras: the development distribution (editable: the seed reads include/sql/).
FROM airflow AS demo
USER root
RUN mkdir -p /data && chown airflow:0 /data && chmod 2775 /data
USER airflow
COPY --chown=airflow:0 include/pyproject.toml ./include/
COPY --chown=airflow:0 include/mailchimp_emulator ./include/mailchimp_emulator
COPY --chown=airflow:0 include/demo_warehouse ./include/demo_warehouse
COPY --chown=airflow:0 include/sql ./include/sql
COPY --chown=airflow:0 include/demo ./include/demo
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -e ./include

# The default target: the deployment image, without the demo.
FROM airflow
