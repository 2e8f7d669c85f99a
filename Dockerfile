# Airflow 3.3.2 with this project installed: the Mailchimp provider, the local Mailchimp server,
# the demo warehouse seed and the DAGs. docker-compose.yaml builds it for every service.
FROM apache/airflow:3.3.2-python3.11

USER root
# Named volumes take the ownership of their mount point from the image on first use.
RUN mkdir -p /opt/airflow/project /opt/airflow/staging /data \
    && chown airflow:0 /opt/airflow/project /opt/airflow/staging /data
USER airflow

WORKDIR /opt/airflow/project
# Only what the install and the DAGs need: no local virtualenv, var/ or .git in the image.
COPY --chown=airflow:0 pyproject.toml constraints.txt README.md ./
COPY --chown=airflow:0 plugins ./plugins
COPY --chown=airflow:0 include ./include
COPY --chown=airflow:0 dags ./dags
# The constraints pin every dependency, Airflow included, to the versions the tests ran with.
RUN pip install --no-cache-dir -e . -c constraints.txt
