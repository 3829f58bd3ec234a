// Copyright 2026 The kosmos_ros Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "kosmos_bt/nodes.hpp"
#include "rclcpp/version.h"

namespace kosmos_bt
{

KosmosSetQueries::KosmosSetQueries(
  const std::string & name, const BT::NodeConfig & config)
: BT::StatefulActionNode(name, config), node_(nodeFrom(config)),
  spinner_(node_) {}

BT::PortsList KosmosSetQueries::providedPorts()
{
  return {
    BT::InputPort<std::vector<std::string>>(
      "queries", "The standing queries, \"the red cup;the door\"; empty "
      "turns them off."),
    BT::InputPort<std::string>(
      "service_name", "/kosmos/set_queries", "The node's service."),
    BT::InputPort<unsigned>(
      "timeout_ms", 2000, "How long to wait for the service, call included."),
  };
}

BT::NodeStatus KosmosSetQueries::onStart()
{
  const auto service = getInput<std::string>("service_name").value_or(
    "/kosmos/set_queries");
  if (!client_ || service != service_name_) {
#if RCLCPP_VERSION_MAJOR >= 17  // Iron and later take an rclcpp::QoS
    client_ = node_->create_client<Service>(
      service, rclcpp::ServicesQoS(), spinner_.group());
#else
    client_ = node_->create_client<Service>(
      service, rmw_qos_profile_services_default, spinner_.group());
#endif
    service_name_ = service;
  }
  auto request = std::make_shared<Service::Request>();
  // An absent or empty port is an empty list: queries off.
  request->queries = getInput<std::vector<std::string>>("queries").value_or(
    std::vector<std::string>{});
  const auto timeout = std::chrono::milliseconds(
    getInput<unsigned>("timeout_ms").value_or(2000));
  deadline_ = std::chrono::steady_clock::now() + timeout;
  if (!client_->wait_for_service(timeout)) {
    RCLCPP_ERROR(
      node_->get_logger().get_child("kosmos_bt"), "%s: no service %s",
      name().c_str(), service_name_.c_str());
    return BT::NodeStatus::FAILURE;
  }
  pending_ = std::make_shared<rclcpp::Client<Service>::FutureAndRequestId>(
    client_->async_send_request(request));
  return BT::NodeStatus::RUNNING;
}

BT::NodeStatus KosmosSetQueries::onRunning()
{
  spinner_.spinSome();
  auto logger = node_->get_logger().get_child("kosmos_bt");
  if (pending_->future.wait_for(std::chrono::seconds(0)) !=
    std::future_status::ready)
  {
    if (std::chrono::steady_clock::now() < deadline_) {
      return BT::NodeStatus::RUNNING;
    }
    client_->remove_pending_request(*pending_);
    pending_.reset();
    RCLCPP_ERROR(logger, "%s: no answer from %s in time", name().c_str(),
      service_name_.c_str());
    return BT::NodeStatus::FAILURE;
  }
  auto response = pending_->future.get();
  pending_.reset();
  if (!response->success) {
    RCLCPP_WARN(logger, "%s: refused: %s", name().c_str(),
      response->message.c_str());
    return BT::NodeStatus::FAILURE;
  }
  return BT::NodeStatus::SUCCESS;
}

void KosmosSetQueries::onHalted()
{
  // A parameter change cannot be taken back; forget its answer.
  if (pending_) {
    client_->remove_pending_request(*pending_);
    pending_.reset();
  }
}

}  // namespace kosmos_bt
